"""causal_lm's built-in datasets (``data.source: builtin:copy``, ``reverse``, ``sort``): short symbol
sequences a tiny decoder learns in minutes, so instruction tuning is tested without a download."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ftlab.learning.tasks.base import DataError

SYMBOLS = ("a", "b", "c", "d", "e", "f", "g", "h")
# every word of the built-in datasets rendered with the plain template (tests build a tokenizer of them)
SYNTHETIC_WORDS = ("user:", "assistant:", "copy:", "reverse:", "sort:", *SYMBOLS)


def synthetic(name: str, n: int, seed: int) -> pd.DataFrame:
    """``n`` distinct prompts ``<name>: a c b`` (2-5 symbols) with their copy, reversal or sorted order."""
    rng = np.random.default_rng(seed)
    if n > 8**5:
        raise DataError(f"data.demo.n_samples={n}: builtin:{name} has fewer distinct examples")
    # a dict, not a set: a set of strings iterates in an order that varies with each process's hash
    # seed, and the dataset with it (the same params gave `dvc repro` and the flow different splits)
    seen: dict[tuple[str, ...], None] = {}
    while len(seen) < n:
        seen[tuple(rng.choice(SYMBOLS, size=int(rng.integers(2, 6))))] = None
    rows = list(seen)  # in the order drawn: already random
    answers = {"copy": rows, "reverse": [s[::-1] for s in rows], "sort": [tuple(sorted(s)) for s in rows]}[name]
    return pd.DataFrame({"prompt": [f"{name}: {' '.join(s)}" for s in rows],
                         "response": [" ".join(s) for s in answers]})
