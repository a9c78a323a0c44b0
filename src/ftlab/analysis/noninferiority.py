"""Is a cheaper method as good as the best? A non-inferiority test, and what would settle it.

"Not significantly worse" is no evidence of "as good": with few seeds or a small test set nothing
is significant, and a rule built on it recommends the cheapest method by default. The standard for
"as good" is non-inferiority (as in clinical trials, ICH E9 / CONSORT): a method qualifies when the
whole confidence interval of its difference to the best lies above ``-tolerance``, the margin
``report.tolerance`` sets. The interval is the paired bootstrap's (:mod:`ftlab.analysis.stats`, same
seeds and test examples, at ``report.confidence``), so the test is one-sided at half its alpha.

When the interval straddles the margin the data cannot decide. Rather than guessing, the answer
says how much more data would settle it: the bootstrap's standard error is split into a seed part
(the spread of the per-seed differences) and a test-example part, and each is scaled (seed part by
1/seeds, example part by 1/test rows) until the interval would clear the margin with 80% power if
the true difference is the observed one. It is an estimate from the observed variance, and says so.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

POWER = 0.8


def assess(test: dict | None, tolerance: float, higher_is_better: bool) -> dict | None:
    """Non-inferiority of a method against the best from their paired test (``vs_best``).

    Differences are in the metric's better direction (positive: the method is better). Returns
    ``{"margin", "difference", "ci_low", "ci_high", "noninferior", "inferior", "settle"}``; ``inferior``
    means the whole interval lies below the margin. None when the two were not tested.
    """
    if test is None:
        return None
    sign = 1.0 if higher_is_better else -1.0
    low, high = sorted((sign * test["ci_low"], sign * test["ci_high"]))
    difference = sign * test["difference"]
    noninferior = low > -tolerance
    inferior = high < -tolerance
    settle = None if noninferior or inferior else _settle(test, difference, tolerance)
    return {"margin": -tolerance, "difference": difference, "ci_low": low, "ci_high": high,
            "noninferior": bool(noninferior), "inferior": bool(inferior), "settle": settle}


def _settle(test: dict, difference: float, tolerance: float) -> dict:
    """How many test rows (at these seeds) or seeds (on these rows) would make the interval clear
    the margin with :data:`POWER`, if the true difference is the observed one."""
    seeds, rows = test["seeds"], test["examples"]
    gap = difference + tolerance
    if gap <= 0:
        return {"test_rows": None, "seeds": None,
                "note": "the observed difference is already below the margin: more data would more likely show "
                        "it inferior than non-inferior"}
    z = float(sps.norm.ppf(0.5 + test["level"] / 2)) + float(sps.norm.ppf(POWER))
    target = (gap / z) ** 2  # the variance the difference may have
    total = test.get("std_error", (test["ci_high"] - test["ci_low"]) / (2 * 1.96)) ** 2
    seed_part = float(np.var(test["per_seed"], ddof=1)) / seeds if seeds > 1 and "per_seed" in test else None
    example_part = max(total - (seed_part or 0.0), 1e-12)
    need_rows = math.ceil(rows * example_part / (target - (seed_part or 0.0))) if target > (seed_part or 0.0) else None
    need_seeds = (math.ceil(seeds * seed_part / (target - example_part))
                  if seed_part is not None and target > example_part else None)
    notes = []
    if seed_part is None:
        notes.append("with one seed the seed-to-seed spread is unknown: the row count assumes none, so run at "
                     "least 3 seeds as well" if seeds == 1 else
                     "the test holds no per-seed differences: the row count leaves the seed spread out")
    elif need_seeds is None:
        notes.append("more seeds alone cannot settle it: the test set's own sampling error is too large")
    if need_rows is None:
        notes.append("more test rows alone cannot settle it: the seed-to-seed spread is too large")
    return {"test_rows": need_rows, "seeds": need_seeds, "note": "; ".join(notes) or None}


def settle_text(settle: dict, test: dict) -> str:
    """The power estimate in words, e.g. "about 4,200 test rows (now 2,000) or 6 seeds (now 3)"."""
    options = []
    if settle["test_rows"] is not None:
        options.append(f"about {settle['test_rows']:,} test rows (now {test['examples']:,})")
    if settle["seeds"] is not None:
        options.append(f"{settle['seeds']} seeds (now {test['seeds']})")
    if not options:
        return settle["note"] or "no amount of data would likely settle it"
    text = " or ".join(options) + " would settle it at 80% power if the difference is as observed"
    return text + (f" ({settle['note']})" if settle["note"] else "")


def markdown(result: dict) -> str:
    """The "Non-inferiority" table of the report: each method against the best, in points or units."""
    rows = [r for r in result["methods"] if r.get("noninferiority")]
    if not rows:
        return ""
    points = result["primary_metric"]["points"]
    scale, unit = (100, " pts") if points else (1, "")
    best = result["recommendation"]["best"]["method"]
    lines = ["## Non-inferiority", "",
             f"A method is as good as {best} when the whole {result['confidence']:.0%} interval of its difference "
             f"to it lies above the margin (−`report.tolerance`); \"not significantly worse\" is not enough.", "",
             "| Method | Difference | Interval | Margin | Verdict |", "|---|---|---|---|---|"]
    for r in rows:
        ni = r["noninferiority"]
        verdict = ("non-inferior" if ni["noninferior"] else "inferior" if ni["inferior"]
                   else "not shown: " + settle_text(ni["settle"], r["vs_best"]))
        lines.append(f"| {r['method']} | {scale * ni['difference']:+.2f}{unit} | "
                     f"[{scale * ni['ci_low']:+.2f}, {scale * ni['ci_high']:+.2f}]{unit} | "
                     f"{scale * ni['margin']:+.2f}{unit} | {verdict} |")
    return "\n".join([*lines, ""]) + "\n"
