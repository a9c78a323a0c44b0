"""Statistics of a comparison over seeds: mean ± std, t confidence intervals, paired bootstrap tests.

Two sources of chance move a fine-tuning result: the seed (initialisation, dropout, batch order,
which examples a small training set gets) and the test set (a different sample of the same
distribution). The interval of one method's metric is a Student t interval over its seeds. The
test between two methods is paired on both: every resample draws seeds (with replacement) and
test examples (with replacement) and compares the two methods on exactly those seeds and
examples, so neither source of chance is left out. With one seed it reduces to the classic
paired bootstrap over test examples.
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


def _mean(sums: np.ndarray, n: int) -> np.ndarray:
    return sums[..., 0] / n


def paired_bootstrap(a: np.ndarray, b: np.ndarray, level: float = 0.95, resamples: int = 10_000,
                     seed: int = 0, statistic: Callable[[np.ndarray, int], np.ndarray] = _mean) -> dict:
    """Test whether method A scores differently from method B on the same seeds and examples.

    ``a`` and ``b`` are per-example scores shaped (seeds, examples) or (seeds, examples, k), with
    row i of both from seed i and column j from test example j. ``statistic(sums, n)`` turns the k
    score columns summed over n drawn examples into the compared number: by default their mean
    (1/0 for correct/wrong gives accuracy); micro-F1 sums (tp, fp, fn) per example and is not a
    mean, which is why the examples are resampled as a whole. Returns the observed difference
    A − B of the statistic (averaged over seeds), its percentile bootstrap interval at ``level``,
    a two-sided bootstrap p-value and the verdict for A: "better"/"worse" when the interval excludes 0.
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
            per_seed[start : start + len(draws), s] = (statistic(counts @ a[s], n_examples)
                                                       - statistic(counts @ b[s], n_examples))
    # per resample: the mean over drawn seeds of that seed's difference on the drawn examples
    boot = np.take_along_axis(per_seed, seed_draws, axis=1).mean(axis=1)
    observed = float(np.mean([statistic(a[s].sum(0), n_examples) - statistic(b[s].sum(0), n_examples)
                              for s in range(n_seeds)]))
    alpha = 1 - level
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    p = min(1.0, 2 * min(np.mean(boot <= 0), np.mean(boot >= 0)))
    verdict: Verdict = "better" if low > 0 else "worse" if high < 0 else "no significant difference"
    return {"difference": observed, "ci_low": float(low), "ci_high": float(high),
            "p_value": float(p), "verdict": verdict, "level": level, "seeds": n_seeds, "examples": n_examples}
