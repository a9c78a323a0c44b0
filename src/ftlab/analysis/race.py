"""The race's rule at a rung, and its "Eliminated" table: which methods stop training, and why.

At each rung (a share of every cell's step budget) the methods still in the race are compared on
the *validation* split, per train size: the leader is the best mean validation score over seeds; a
method is eliminated when the paired bootstrap against the leader (same seeds, same validation
examples, the task's own statistic, at ``report.confidence``) puts its whole interval below
``-report.tolerance``, the inferiority side of :func:`ftlab.analysis.noninferiority.assess`; and
successive halving's cap keeps at most ceil(n/eta) of the n methods, the best by mean score.

Why not Optuna's pruners: ``WilcoxonPruner`` tests one trial against the best with no margin and
no resampling of seeds, and ``SuccessiveHalvingPruner`` compares single values. The race must
eliminate on the recommendation's own statistic and tolerance, or it could stop a method the
recommendation would have called as good as the best. The test split is never read here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ftlab.analysis.noninferiority import assess
from ftlab.analysis.stats import paired_bootstrap
from ftlab.core.record import read_record

Statistic = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _columns(scores: np.ndarray) -> np.ndarray:
    """(seeds, examples, k): the shape the statistic reads per seed."""
    scores = np.asarray(scores, dtype=float)
    return scores[..., None] if scores.ndim == 2 else scores


def mean_score(scores: np.ndarray, statistic: Statistic) -> float:
    """The metric on every validation example, averaged over seeds."""
    per_seed = _columns(scores)
    everything = np.ones((1, per_seed.shape[1]))
    return float(np.mean([statistic(everything, s)[0] for s in per_seed]))


def decide(scores: dict[str, np.ndarray], statistic: Statistic, higher_is_better: bool, tolerance: float,
           level: float, eta: int) -> dict:
    """One rung's decision. ``scores``: per method, validation scores shaped (seeds, examples[, k]),
    row i of every method from the same seed. Returns the leader and one row per method, best first:
    its score, its paired test against the leader and ``decision`` (leader, survives, eliminated)
    with ``reason`` (inferior: the interval is below the margin; cap: outside the best ceil(n/eta))."""
    sign = 1.0 if higher_is_better else -1.0
    means = {m: mean_score(s, statistic) for m, s in scores.items()}
    ordered = sorted(means, key=lambda m: (-sign * means[m], m))
    leader, keep = ordered[0], math.ceil(len(ordered) / eta)
    rows = [{"method": leader, "score": means[leader], "decision": "leader", "reason": None,
             "difference": None, "ci_low": None, "ci_high": None, "p_value": None}]
    for rank, method in enumerate(ordered[1:], start=1):
        test = paired_bootstrap(scores[method], scores[leader], level, statistic=statistic,
                                higher_is_better=higher_is_better)
        verdict = assess(test, tolerance, higher_is_better)
        assert verdict is not None  # a test was given
        reason = "inferior" if verdict["inferior"] else "cap" if rank >= keep else None
        rows.append({"method": method, "score": means[method], "decision": "eliminated" if reason else "survives",
                     "reason": reason, "difference": test["difference"], "ci_low": test["ci_low"],
                     "ci_high": test["ci_high"], "p_value": test["p_value"]})
    return {"leader": leader, "keep": keep, "methods": rows}


def _seconds_per_step(run_dirs: list[Path]) -> dict[tuple[str, str], float]:
    """Per (method, train size): the mean seconds per step the eliminated cells' records measured."""
    per_step: dict[tuple[str, str], list[float]] = {}
    for run_dir in run_dirs:
        record = read_record(run_dir)
        if record.steps:
            per_step.setdefault((record.method, str(record.train_size)), []).append(record.cost.train_seconds / record.steps)
    return {k: sum(v) / len(v) for k, v in per_step.items()}


def eliminated_rows(decisions: dict, run_dirs: list[Path]) -> list[dict]:
    """The "Eliminated" table's rows: per train size and eliminated method, the rung that stopped it,
    its validation score against the leader's, the test and the compute saved (steps not trained by
    its cells × the seconds per step measured by its cells' run records, ``run_dirs``)."""
    seconds_per_step = _seconds_per_step(run_dirs)
    out = []
    for size in decisions.get("sizes", []):
        for rung in size["rungs"]:
            leader = next(r for r in rung["methods"] if r["decision"] == "leader")
            for row in rung["methods"]:
                if row["decision"] != "eliminated":
                    continue
                saved = sum(b - s for s, b in zip(row["stop_steps"], row["budget_steps"], strict=True))
                per_step = seconds_per_step.get((row["method"], str(size["train_size"])))
                out.append({"method": row["method"], "train_size": size["train_size"], "rung": rung["rung"],
                            "share": rung["share"], "steps": max(row["stop_steps"]),
                            "budget_steps": max(row["budget_steps"]), "score": row["score"],
                            "leader": leader["method"], "leader_score": leader["score"], "reason": row["reason"],
                            **{k: row[k] for k in ("difference", "ci_low", "ci_high", "p_value")},
                            "steps_saved": saved, "seconds_saved": None if per_step is None else saved * per_step})
    return out


def markdown(rows: list[dict], points: bool, confidence: float) -> str:
    """The report's "Eliminated" table (empty when the race eliminated nothing or did not run)."""
    if not rows:
        return ""
    scale, unit = (100, " pts") if points else (1, "")
    lines = ["## Eliminated", "",
             f"The race stopped these methods at a rung, on the validation split: a {confidence:.0%} paired interval "
             "below −`report.tolerance` against the leader (inferior), or outside the best 1/`race.eta` (cap). "
             "They are left out of the table's statistics and the recommendation.", "",
             "| Method | Train size | Rung | Steps (share) | Validation | Leader | Difference | Interval | p | Why "
             "| Compute saved |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        saved = f"{r['steps_saved']:,} steps" + (f", {r['seconds_saved']:.1f} s" if r["seconds_saved"] is not None else "")
        lines.append(
            f"| {r['method']} | {r['train_size']} | {r['rung']} | {r['steps']:,} of {r['budget_steps']:,} ({r['share']:.0%}) "
            f"| {r['score']:.4f} | {r['leader']} {r['leader_score']:.4f} | {scale * r['difference']:+.2f}{unit} "
            f"| [{scale * r['ci_low']:+.2f}, {scale * r['ci_high']:+.2f}]{unit} | {r['p_value']:.3f} | {r['reason']} "
            f"| {saved} |")
    return "\n".join([*lines, ""]) + "\n"
