"""The task registry: every module in this package defines one task.

Adding a task is one small file here: subclass :class:`~ftlab.learning.tasks.base.Task` (or
:class:`~ftlab.learning.tasks.sequence.SequenceTask` for one output vector per text), give it an ``Options``
class for its params, decorate it with :func:`register`, and import the module below (the import
order is the order ``ftlab tasks`` lists them in).

The registry is light: a task module imports ``ftlab.learning.modeling``, ``metrics`` and
``generation`` (torch, transformers, sklearn) inside the functions that build, train or score a
model, so that loading a config or listing the tasks does not pay for them.
"""

from __future__ import annotations

from ftlab.learning.tasks.base import TASKS, DataError, Metric, Task, TaskOptions, register

# unsorted on purpose: the registration order is the order `ftlab tasks` lists them in
from ftlab.learning.tasks import classification, regression, multilabel, token, causal_lm  # noqa: F401  isort: skip


def make_task(opts: TaskOptions) -> Task:
    """The registered task named by ``opts.type``, bound to ``opts``."""
    return TASKS[opts.type](opts)


__all__ = ["TASKS", "DataError", "Metric", "Task", "TaskOptions", "make_task", "register"]
