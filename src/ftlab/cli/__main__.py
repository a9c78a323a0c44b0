"""``python -m ftlab.cli``: the ``ftlab`` command."""

from ftlab.cli import app

app()
