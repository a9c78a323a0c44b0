"""Which method to pick, from the comparison's rows at one train size.

Recommendation rules, at the largest train size (quality is the mean primary test metric over seeds):

* ``best``: the best quality. Ties go to fewer trainable parameters, then less train time.
* ``cheapest_within_tolerance``: the best, unless a cheaper method is *shown* as good: non-inferior
  to the best within ``tolerance`` (the whole interval of its paired difference to the best lies
  above −tolerance: :mod:`ftlab.analysis.noninferiority`). Among those, the one with the fewest
  trainable parameters. "No significant difference" never qualifies a method: with few seeds or a
  small test set nothing is significant. "Cheaper" means fewer trainable parameters (they set the
  artifact size and optimizer state), or as many and a train time shorter by more than its noise:
  ``report.time_noise`` of the best's time and, with two seeds or more each, a Welch test of the
  seeds' times. Methods whose checks say "overfit" are skipped unless every qualifying method
  overfits. When no cheaper method is shown non-inferior, the text says what would settle it.
* ``within_memory_budget`` / ``within_time_budget``: the best method whose
  ``peak_memory_mb`` / ``train_seconds`` is at most the budget. Null when no budget is set;
  ``method: null`` with a note when nothing fits.
"""

from __future__ import annotations

from scipy import stats as sps

from ftlab.analysis.noninferiority import assess, settle_text
from ftlab.analysis.render import count, mib
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


def _cheaper(row: dict, best: dict, cfg: ReportConfig) -> str | None:
    """Why ``row`` costs less than ``best``, or None: fewer trainable parameters, or as many and a
    train time shorter by more than the run-to-run noise."""
    if row["trainable_params"] != best["trainable_params"]:
        return "fewer trainable parameters" if row["trainable_params"] < best["trainable_params"] else None
    saved = best["train_seconds"] - row["train_seconds"]
    if saved <= cfg.time_noise * best["train_seconds"]:
        return None
    spreads = row.get("train_seconds_std"), best.get("train_seconds_std")
    if None not in spreads:  # two seeds or more each: the saving must also beat the seeds' spread
        test = sps.ttest_ind_from_stats(row["train_seconds"], spreads[0], len(row["seeds"]),
                                        best["train_seconds"], spreads[1], len(best["seeds"]), equal_var=False)
        if not test.pvalue < round(1 - cfg.confidence, 12):
            return None
    return "as many trainable parameters and a clearly shorter train time"


def _qualified(rows: list[dict], best: dict, cfg: ReportConfig) -> list[dict]:
    """The best and every cheaper method shown non-inferior to it."""
    return [best] + [r for r in rows if r is not best and (r.get("noninferiority") or {}).get("noninferior")
                     and _cheaper(r, best, cfg)]


def _unsettled(rows: list[dict], best: dict, cfg: ReportConfig) -> str:
    """Why no cheaper method replaces the best: inferior, not shown non-inferior (with what would
    settle it), or no cheaper beyond the noise."""
    parts = []
    for r in rows:
        ni = r.get("noninferiority")
        if r is best or ni is None or not _cheaper(r, best, cfg):
            continue
        if ni["noninferior"]:
            parts.append(f"{r['method']} is non-inferior but overfit")
        elif ni["inferior"]:
            parts.append(f"{r['method']} is inferior (its interval lies below the margin)")
        elif not ni["noninferior"]:
            parts.append(f"{r['method']} is not shown non-inferior ({_points(ni)}); "
                         + settle_text(ni["settle"], r["vs_best"]))
    return " ".join(p + "." for p in parts)


def _points(ni: dict) -> str:
    return (f"difference {ni['difference']:+.3g}, interval [{ni['ci_low']:+.3g}, {ni['ci_high']:+.3g}] "
            f"against a margin of {ni['margin']:+.3g}")


def _significance(row: dict) -> str:
    ni = row["noninferiority"]
    return f"non-inferior at {row['vs_best']['level']:.0%} ({_points(ni)})"


def recommend(rows: list[dict], cfg: ReportConfig, metric: str = "accuracy", higher_is_better: bool = True) -> dict:
    """Apply the recommendation rules in the module docstring to the rows of the largest train size;
    ``metric`` names the task's primary metric in the text. Sets each row's ``noninferiority``."""
    best = best_row(rows)
    for r in rows:
        r["noninferiority"] = None if r is best else assess(r.get("vs_best"), cfg.tolerance, higher_is_better)
    within = _qualified(rows, best, cfg)
    healthy = [r for r in within if r["overfitting"] != "overfit"]
    pick = min(healthy or within, key=lambda r: (r["trainable_params"], r["train_seconds"]))
    why = (f"fewest trainable parameters ({count(pick['trainable_params'])}, ties broken by train time) "
           f"among the best and the cheaper methods shown non-inferior to it within {cfg.tolerance:g}: "
           + ", ".join(r["method"] for r in within))
    skipped = [r["method"] for r in within if r["overfitting"] == "overfit"]
    if skipped:
        why += f"; skipped as overfit: {', '.join(skipped)}" if healthy else "; all of them overfit"
    memory_pick = _budget(rows, "peak_memory_mb", cfg.memory_budget_mb, "MB", "memory", metric)
    time_pick = _budget(rows, "train_seconds", cfg.time_budget_s, "s", "time", metric)

    if pick is best:
        cheaper = [r for r in rows if r is not best and _cheaper(r, best, cfg)]
        text = f"Pick {best['method']}: it has the best {metric} ({best['primary']:.3f}) and "
        text += (f"no cheaper method is shown as good within {cfg.tolerance:g}: "
                 + (_unsettled(rows, best, cfg) or "none was tested against it.")
                 if cheaper else "no method costs less beyond the noise of train time.")
    else:
        saved = 1 - pick["train_seconds"] / best["train_seconds"]
        sizes = f"{mib(pick['artifact_bytes']):.3g} MB", f"{mib(best['artifact_bytes']):.3g} MB"
        text = (f"Pick {pick['method']}: {pick['primary']:.3f} {metric} against {best['method']}'s "
                f"{best['primary']:.3f}, {_significance(pick)}; it trains {pick['trainable_percent']:.3g}% "
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
