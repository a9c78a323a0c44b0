"""The method registry: every module in this package defines one or more fine-tuning methods.

Adding a method is one small file here: subclass :class:`~ftlab.learning.methods.base.Method` (or
:class:`~ftlab.learning.methods.base.PeftMethod`), decorate it with :func:`register`, and import the module
below (the import order is the order ``ftlab methods`` lists them in).

The registry is light: a method imports ``ftlab.learning.modeling`` and peft (torch, transformers)
inside the functions that prepare a model, so that loading a config or listing the methods does not
pay for them.
"""

from __future__ import annotations

from ftlab.learning.methods.base import METHODS, Method, MethodParams, PeftMethod, register

# unsorted on purpose: the registration order is the order `ftlab methods` lists them in
from ftlab.learning.methods import full, llrd, freeze, bitfit, lora, ia3, prompt, adapter, probe  # noqa: F401  isort: skip


def get_method(name: str) -> Method:
    """The registered method called ``name``; a KeyError that lists the known ones otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}") from None


__all__ = ["METHODS", "Method", "MethodParams", "PeftMethod", "get_method", "register"]
