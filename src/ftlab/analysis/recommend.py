"""Which method to pick, from the comparison's rows at one train size.

Recommendation rules, at the largest train size (quality is the mean primary test metric over seeds):

* ``best``: the best quality. Ties go to fewer trainable parameters, then less train time.
* ``cheapest_within_tolerance``: among the best and every method that is not significantly worse
  than it (or is, but by at most ``tolerance``), the one with the fewest trainable parameters
  (ties: less train time). A costlier method is preferred only when it is significantly better.
  "Cost" here means trainable parameters, since they set the artifact size and optimizer state;
  train time is reported beside it and never mixed in. Methods whose checks say "overfit" are
  skipped unless every qualifying method overfits.
* ``within_memory_budget`` / ``within_time_budget``: the best method whose
  ``peak_memory_mb`` / ``train_seconds`` is at most the budget. Null when no budget is set;
  ``method: null`` with a note when nothing fits.
"""

from __future__ import annotations

from ftlab.analysis.render import count, mib, p_value
from ftlab.core.config import ReportConfig


def best_row(rows: list[dict]) -> dict:
    """The row of the best quality; ties go to fewer trainable parameters, then less train time."""
    return max(rows, key=lambda r: (r["score"], -r["trainable_params"], -r["train_seconds"]))


def pareto(rows: list[dict], cost: str) -> set[str]:
    """Methods that no other method beats: at least as good for no more cost, and strictly better in one."""
    def dominated(r: dict) -> bool:
        return any(o[cost] <= r[cost] and o["score"] >= r["score"]
                   and (o[cost] < r[cost] or o["score"] > r["score"]) for o in rows)
    return {r["method"] for r in rows if not dominated(r)}


def _budget(rows: list[dict], key: str, budget: float | None, unit: str, what: str, metric: str) -> dict | None:
    """The best method with ``key`` within ``budget``. None when no budget is set."""
    if budget is None:
        return None
    fits = [r for r in rows if r[key] <= budget]
    if not fits:
        low = min(rows, key=lambda r: r[key])
        return {"method": None, "value": None, "budget": budget,
                "note": f"No method fits the {budget:g} {unit} {what} budget "
                        f"(the lowest is {low['method']} at {low[key]:g} {unit})"}
    pick = best_row(fits)
    return {"method": pick["method"], "value": pick["primary"], "budget": budget, key: pick[key],
            "note": f"Within the {budget:g} {unit} {what} budget, pick {pick['method']} "
                    f"({pick['primary']:.3f} {metric}, {pick[key]:g} {unit})"}


def _equivalent(row: dict, best: dict, tolerance: float) -> bool:
    """Not worth paying for the best instead: not significantly worse, or worse by at most the tolerance."""
    test = row["vs_best"]
    return row is best or best["score"] - row["score"] <= tolerance + 1e-9 or (
        test is not None and test["verdict"] != "worse")


def _significance(row: dict) -> str:
    test = row["vs_best"]
    if test is None:
        return "not tested"
    word = "significantly" if test["verdict"] != "no significant difference" else "not significantly"
    return f"{word} different at {test['level']:.0%} ({p_value(test['p_value'])})"


def recommend(rows: list[dict], cfg: ReportConfig, metric: str = "accuracy") -> dict:
    """Apply the recommendation rules in the module docstring to the rows of the largest train size;
    ``metric`` names the task's primary metric in the text."""
    best = best_row(rows)
    points = 100 * cfg.tolerance
    unit = "point" if points == 1 else "points"
    within = [r for r in rows if _equivalent(r, best, cfg.tolerance)]
    healthy = [r for r in within if r["overfitting"] != "overfit"]
    pick = min(healthy or within, key=lambda r: (r["trainable_params"], r["train_seconds"]))
    why = (f"fewest trainable parameters ({count(pick['trainable_params'])}, ties broken by train time) "
           f"among the best and the methods not significantly worse than it or within {points:g} {unit}: "
           + ", ".join(r["method"] for r in within))
    skipped = [r["method"] for r in within if r["overfitting"] == "overfit"]
    if skipped:
        why += f"; skipped as overfit: {', '.join(skipped)}" if healthy else "; all of them overfit"
    memory_pick = _budget(rows, "peak_memory_mb", cfg.memory_budget_mb, "MB", "memory", metric)
    time_pick = _budget(rows, "train_seconds", cfg.time_budget_s, "s", "time", metric)

    if pick is best:
        cheaper = [r for r in rows if r["trainable_params"] < best["trainable_params"]]
        text = (f"Pick {best['method']}: it has the best {metric} ({best['primary']:.3f}), and "
                + ("every method with fewer trainable parameters is significantly worse by more than "
                   f"{points:g} {unit}." if cheaper else "no method trains fewer parameters."))
    else:
        saved = 1 - pick["train_seconds"] / best["train_seconds"]
        sizes = f"{mib(pick['artifact_bytes']):.3g} MB", f"{mib(best['artifact_bytes']):.3g} MB"
        text = (f"Pick {pick['method']}: {pick['primary']:.3f} {metric}, "
                f"{100 * (best['score'] - pick['score']):.1f} points worse than {best['method']} "
                f"({best['primary']:.3f}), {_significance(pick)}; it trains {pick['trainable_percent']:.3g}% "
                f"of the parameters in {abs(saved):.0%} {'less' if saved >= 0 else 'more'} time"
                + (f", with an artifact of {sizes[0]} instead of {sizes[1]}." if sizes[0] != sizes[1] else "."))
    text += "".join(f" {b['note']}." for b in (memory_pick, time_pick) if b)
    overfit = [r["method"] for r in rows if r["overfitting"] == "overfit"]
    if overfit:
        text += f" The checks flagged {', '.join(overfit)} as overfit"
        text += "; overfit methods are not recommended as the cheap pick." if skipped and healthy else "."
    return {"best": {"method": best["method"], "value": best["primary"]},
            "cheapest_within_tolerance": {"method": pick["method"], "value": pick["primary"], "why": why},
            "within_memory_budget": memory_pick, "within_time_budget": time_pick, "text": text}
