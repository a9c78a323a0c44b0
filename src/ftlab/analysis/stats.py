"""Statistics of a comparison over seeds: mean ± std, t confidence intervals, paired bootstrap tests.

Two sources of chance move a fine-tuning result: the seed (initialisation, dropout, batch order,
which examples a small training set gets) and the test set (a different sample of the same
distribution). The interval of one method's metric is a Student t interval over its seeds. The
test between two methods is paired on both: every resample draws seeds (with replacement) and
test examples (with replacement) and recomputes the task's primary metric for both methods on exactly
those seeds and examples, so neither source of chance is left out. With one seed it reduces to
the classic paired bootstrap over test examples.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
from scipy import stats as sps

Verdict = Literal["better", "worse", "no significant difference"]


def mean_ci(values: list[float] | np.ndarray, level: float = 0.95) -> dict:
    """Mean, sample standard deviation and the two-sided Student t interval of ``values``.

    With one value there is no spread to estimate: std and the interval are None, not zero.
    """
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        raise ValueError("mean_ci needs at least one value")
    mean = float(x.mean())
    if n == 1:
        return {"mean": mean, "std": None, "ci_low": None, "ci_high": None, "n": 1}
    std = float(x.std(ddof=1))
    half = float(sps.t.ppf(0.5 + level / 2, df=n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def _mean(counts: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return counts @ scores[:, 0] / counts.sum(-1)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, level: float = 0.95, resamples: int = 10_000,
                     seed: int = 0, statistic: Callable[[np.ndarray, np.ndarray], np.ndarray] = _mean,
                     higher_is_better: bool = True) -> dict:
    """Test whether method A scores differently from method B on the same seeds and examples.

    ``a`` and ``b`` are per-example scores shaped (seeds, examples) or (seeds, examples, k), with
    row i of both from seed i and row j from test example j. ``statistic(counts, scores)`` is the
    compared metric recomputed on resamples of the examples: ``counts`` (resamples, examples) says
    how often each example was drawn, ``scores`` (examples, k) is one seed's scores (a task's
    :class:`~ftlab.learning.tasks.base.Statistic`: accuracy, micro-F1 from tp/fp/fn, Spearman from target and
    prediction). The default is the mean of the one column (1/0 for right/wrong gives accuracy).

    Returns the observed difference A − B of the metric (averaged over seeds) and per seed, its
    percentile bootstrap interval at ``level`` and standard error (the power estimates of
    :mod:`ftlab.analysis.noninferiority` scale it), a two-sided p-value and the verdict for A, "better"/"worse" in
    the metric's direction (``higher_is_better``) when the interval excludes 0. The p-value counts
    the resamples on the other side of 0 from the observed difference (doubled), and a verdict
    agrees in sign with the observed difference: an interval that excludes 0 on the other side (a
    bootstrap distribution far from what was observed) is no evidence either way.
    """
    a, b = (np.asarray(x, dtype=float) for x in (a, b))
    a, b = (x.reshape(1, -1) if x.ndim == 1 else x for x in (a, b))
    a, b = (x[..., None] if x.ndim == 2 else x for x in (a, b))
    if a.shape != b.shape:
        raise ValueError(f"paired scores must have the same shape (seeds, examples[, k]): {a.shape} vs {b.shape}")
    n_seeds, n_examples, _ = a.shape
    rng = np.random.default_rng(seed)
    seed_draws = rng.integers(0, n_seeds, size=(resamples, n_seeds))
    per_seed = np.empty((resamples, n_seeds))
    for start in range(0, resamples, 500):  # example draws as counts, 500 resamples at a time
        draws = rng.integers(0, n_examples, size=(min(500, resamples - start), n_examples))
        counts = np.stack([np.bincount(d, minlength=n_examples) for d in draws]).astype(float)
        for s in range(n_seeds):
            per_seed[start : start + len(draws), s] = statistic(counts, a[s]) - statistic(counts, b[s])
    # per resample: the mean over drawn seeds of that seed's difference on the drawn examples
    boot = np.take_along_axis(per_seed, seed_draws, axis=1).mean(axis=1)
    everything = np.ones((1, n_examples))
    per_seed_observed = [float(statistic(everything, a[s])[0] - statistic(everything, b[s])[0]) for s in range(n_seeds)]
    observed = float(np.mean(per_seed_observed))
    alpha = round(1 - level, 12)  # 1 - 0.95 is 0.05000000000000004 in floating point
    low, high = (float(q) for q in np.quantile(boot, [alpha / 2, 1 - alpha / 2]))
    side = float(np.sign(observed))
    p = 1.0 if side == 0 else min(1.0, 2 * float(np.mean(side * boot <= 0)))
    # the interval excludes 0 and, at the boundary where quantile interpolation and counting differ
    # (exactly alpha of the resamples on the other side), the p-value agrees
    significant = side != 0 and side * low > 0 and side * high > 0 and p < alpha
    better = side > 0 if higher_is_better else side < 0
    verdict: Verdict = ("no significant difference" if not significant else "better" if better else "worse")
    return {"difference": observed, "ci_low": low, "ci_high": high, "std_error": float(boot.std(ddof=1)),
            "per_seed": per_seed_observed, "p_value": p, "verdict": verdict, "level": level,
            "seeds": n_seeds, "examples": n_examples}
