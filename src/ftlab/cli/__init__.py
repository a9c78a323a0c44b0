"""The ``ftlab`` command line: the pipeline's commands (``ftlab.cli.pipeline``: each stage of
dvc.yaml, the whole pipeline) and the operations commands (``ftlab.cli.operations``: predict,
monitor, merge, ci), on one app (``ftlab.cli.common``). Importing a module registers its commands,
in this order in ``--help``."""

from ftlab.cli import pipeline  # isort: skip
from ftlab.cli import operations  # isort: skip
from ftlab.cli.common import app

__all__ = ["app", "operations", "pipeline"]
