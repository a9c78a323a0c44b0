"""Which rows go to train, validation and test, decided from row counts and class codes alone.

A plan needs no text: only how many rows each source split has and, where the task has classes,
each row's class code (:func:`ftlab.data.labels.codes`). So a file read in chunks is planned from its
labels, without holding it, and the plan is the same whatever the chunks.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ftlab.core.config import DataConfig
from ftlab.learning.tasks import DataError

Plan = dict[str, tuple[str, np.ndarray]]  # split -> (source split it comes from, its rows' positions there, in order)


def draw(size: int, n: int, seed: int, strata: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``n`` of ``size`` rows and of the rest, in the order the split takes them (as
    scikit-learn shuffles them), seeded, stratified by ``strata``
    (class codes) when given. scikit-learn's split is used where it applies (at least two rows per
    class, and a row of every class on both sides); otherwise each class gets its share of the ``n``
    rows by largest remainder, every class keeping at least one row among the ``n`` when they allow,
    so any ``n`` up to the size is honoured and a class of one row stays on the drawn side."""
    from sklearn.model_selection import train_test_split  # 0.8 s: only `prepare` splits

    if strata is None:
        order = np.random.default_rng(seed).permutation(size)
        return np.sort(order[:n]), np.sort(order[n:])
    labels = pd.Series(strata)
    counts = labels.value_counts(sort=False)
    if counts.min() >= 2 and min(n, size - n) >= len(counts):
        try:
            keep, rest = train_test_split(np.arange(size), train_size=n, random_state=seed, stratify=strata)
            return np.asarray(keep), np.asarray(rest)
        except ValueError:
            pass
    quota = _quotas(counts, n, size)
    rng = np.random.default_rng(seed)
    positions = np.arange(size)
    chosen = np.concatenate([rng.permutation(positions[(labels == name).to_numpy()])[:k] for name, k in quota.items()])
    chosen = rng.permutation(chosen)
    mask = np.zeros(size, dtype=bool)
    mask[chosen] = True
    return chosen, np.flatnonzero(~mask)


def _quotas(counts: pd.Series, n: int, size: int) -> pd.Series:
    """Rows per class among ``n`` of ``size``: largest remainder, at least one each when n allows."""
    exact = counts * n / size
    quota = exact.astype(int)
    if n >= len(counts):
        quota = quota.clip(lower=1)
        excess = int(quota.sum()) - n
        for name in quota.sort_values(ascending=False, kind="stable").index:  # paid by the largest classes
            take = min(max(excess, 0), int(quota[name]) - 1)
            quota[name] -= take
            excess -= take
    for name in (exact - quota).sort_values(ascending=False, kind="stable").index[: max(0, n - int(quota.sum()))]:
        quota[name] += 1
    return quota


def _split_off(size: int, share: float, seed: int, strata: np.ndarray | None, target: str,
               key: str) -> tuple[np.ndarray, np.ndarray]:
    """Split the share ``share`` (the value of params key ``key``) off ``size`` train rows as ``target``."""
    n_off = math.ceil(share * size)  # as scikit-learn rounds a test share
    if size - n_off < 1:
        raise DataError(
            f"train: {size} row(s) cannot give {key}={share:g} of them to {target} ({n_off} row(s)) and keep "
            f"any to train; add rows, or give {target} a file of its own (data.source: {{train: FILE, {target}: FILE}})")
    return draw(size, size - n_off, seed, strata)


def plan(sizes: dict[str, int], strata: dict[str, np.ndarray | None], cfg: DataConfig, seed: int) -> Plan:
    """Train/validation/test rows: the source's own splits, test and validation split off train
    where the source has none (``data.test_size``, ``data.validation_size``), then each subsampled
    to ``data.max_*_samples``."""
    out: Plan = {name: (name, np.arange(n)) for name, n in sizes.items()}

    def of(name: str) -> np.ndarray | None:
        source, rows = out[name]
        codes = strata[source]
        return None if codes is None else codes[rows]

    def split_off(target: str, share: float, key: str) -> None:
        source, rows = out["train"]
        keep, off = _split_off(len(rows), share, seed, of("train"), target, key)
        out["train"], out[target] = (source, rows[keep]), (source, rows[off])

    if "test" not in sizes:
        split_off("test", cfg.test_size, "data.test_size")
    if "validation" not in sizes:
        share = cfg.validation_size / (1 - cfg.test_size) if "test" not in sizes else cfg.validation_size
        key = "data.validation_size" + (f" (a {share:.4g} share of what data.test_size left)" if "test" not in sizes else "")
        split_off("validation", share, key)
    limits = {"train": cfg.max_train_samples, "validation": cfg.max_validation_samples, "test": cfg.max_test_samples}
    for name, limit in limits.items():
        source, rows = out[name]
        if limit is not None and limit < len(rows):
            out[name] = (source, rows[draw(len(rows), limit, seed, of(name))[0]])
    return out
