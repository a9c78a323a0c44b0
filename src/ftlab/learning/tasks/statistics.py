"""How the paired tests recompute a task's primary metric on each resample of the test examples.

A task names one of these as its ``statistic``: a mean of per-example scores (accuracy, exact
match), micro-F1 from summed counts, or Spearman's correlation ranked again per resample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Statistic:
    """The task's primary metric as every paired test recomputes it on a resample of the test examples.

    ``counts`` (resamples, examples) says how often each test example was drawn; ``scores``
    (examples, k) are the task's :meth:`Task.example_scores`. ``statistic(counts, scores)`` is the
    metric of each resample: what :meth:`Task.test_metrics` gives on the drawn rows, duplicates
    included (tests/test_verdicts.py checks it for every task), so a verdict is always about the
    metric the table and the recommendation name. :func:`register` refuses a task whose statistic
    computes another metric than its primary one.
    """

    metric: str  # the Metric.name it computes: the task's primary metric
    label: str  # e.g. "accuracy", "micro-F1", "Spearman"
    points: bool = True  # a share in [0, 1], differences printed in percentage points

    def __call__(self, counts: np.ndarray, scores: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class SumStatistic(Statistic):
    """A metric that is a function of per-example score columns summed over the drawn examples (the
    fast path: one matrix product per block of resamples); ``of_sums(sums, n)`` is that function."""

    def __call__(self, counts: np.ndarray, scores: np.ndarray) -> np.ndarray:
        return self.of_sums(counts @ scores, counts.sum(-1))

    def of_sums(self, sums: np.ndarray, n: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class MeanStatistic(SumStatistic):
    """The mean of one per-example score: accuracy from 1/0 for right/wrong, exact match."""

    def of_sums(self, sums: np.ndarray, n: np.ndarray) -> np.ndarray:
        return sums[..., 0] / n


class F1Statistic(SumStatistic):
    """Micro-F1 from summed (true positive, false positive, false negative) counts; 0 when there is
    nothing to count (no entity or label predicted or true), as seqeval and multilabel's micro-F1 say."""

    def of_sums(self, sums: np.ndarray, n: np.ndarray) -> np.ndarray:
        tp, fp, fn = sums[..., 0], sums[..., 1], sums[..., 2]
        denominator = 2 * tp + fp + fn
        return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1e-12), 0.0)


class SpearmanStatistic(Statistic):
    """Spearman's rank correlation of (target, prediction), the two score columns, on each resample.

    Not a function of per-example sums: each resample is ranked again. An example drawn c times is c
    tied rows of the resample, so its rank is the average rank of its value among the drawn rows and
    the correlation is the count-weighted Pearson correlation of those ranks: exactly
    ``scipy.stats.spearmanr`` of the drawn rows, without materialising them. A constant side
    correlates with nothing: 0, as the task's test metric says.
    """

    def __call__(self, counts: np.ndarray, scores: np.ndarray) -> np.ndarray:
        counts = np.asarray(counts, dtype=float)
        ry, rp = (_resampled_ranks(counts, scores[:, j]) for j in (0, 1))
        n = counts.sum(-1, keepdims=True)
        dy, dp = ry - (counts * ry).sum(-1, keepdims=True) / n, rp - (counts * rp).sum(-1, keepdims=True) / n
        vy, vp = (counts * dy * dy).sum(-1), (counts * dp * dp).sum(-1)
        cov = (counts * dy * dp).sum(-1)
        ok = (vy > 1e-9) & (vp > 1e-9)  # doubled ranks are whole numbers: a non-constant side has vy >= 1
        return np.where(ok, cov / np.sqrt(np.where(ok, vy * vp, 1.0)), 0.0)


def _resampled_ranks(counts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(resamples, examples): twice the average rank, among the drawn rows of each resample, of each
    example's value (twice: whole numbers; a correlation does not depend on the scale)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    new = np.r_[True, ordered[1:] != ordered[:-1]]  # the first of each run of equal values
    if new.all():  # no ties: each example is its own run (the fast, common case of predictions)
        drawn = counts[:, order]
        twice = np.empty_like(drawn)
        twice[:, order] = 2 * np.cumsum(drawn, axis=1) - drawn + 1
        return twice
    group = np.empty(len(values), dtype=int)
    group[order] = np.cumsum(new) - 1
    drawn = np.add.reduceat(counts[:, order], np.flatnonzero(new), axis=1)  # rows per distinct value
    return (2 * np.cumsum(drawn, axis=1) - drawn + 1)[:, group]
