"""Every metric per slice: the source's rows and each ingested batch's (``slice``, see ftlab.data.batches).

A model that gains on the newest batch and loses on the source data shows both here. Per run, each
metric of the task is computed on the test rows of each slice; per method and train size, its mean
over seeds with the same Student t interval as the overall numbers (:func:`ftlab.analysis.stats.mean_ci`).
"""

from __future__ import annotations

import pandas as pd

from ftlab.analysis.stats import mean_ci
from ftlab.core.escape import md_text
from ftlab.learning.tasks import Task


def run_slices(predictions: pd.DataFrame, labels: list[str], task: Task) -> dict[str, dict] | None:
    """{slice: {"n": rows, metric: value}} of one run's test predictions; None without slices."""
    if "slice" not in predictions:
        return None
    out = {}
    for name, rows in predictions.groupby("slice", sort=False):
        metrics = task.test_metrics(rows.reset_index(drop=True), labels)
        out[str(name)] = {"n": len(rows), **{m.name: metrics[m.name] for m in task.metrics}}
    return out


def summarize(runs: list[dict], level: float) -> dict[str, dict] | None:
    """{slice: {"n", metric: mean, f"{metric}_ci": [low, high]}} over the seeds of one method and size."""
    per_run = [r["slices"] for r in runs if r.get("slices")]
    if not per_run:
        return None
    out: dict[str, dict] = {}
    for name in per_run[0]:
        values = [s[name] for s in per_run if name in s]
        row: dict = {"n": values[0]["n"]}
        for metric in (k for k in values[0] if k != "n"):
            stats = mean_ci([v[metric] for v in values], level)
            row |= {metric: stats["mean"], f"{metric}_ci": [stats["ci_low"], stats["ci_high"]]}
        out[name] = row
    return out


def _value(row: dict, metric: str) -> str:
    low, high = row[f"{metric}_ci"]
    return f"{row[metric]:.4f}" + ("" if low is None else f" [{low:.4f}, {high:.4f}]")


def markdown(result: dict) -> str:
    """The per-slice table of the comparison (empty without batches)."""
    rows = [r for r in result["methods"] if r.get("slices")]
    if not rows:
        return ""
    metrics = [m["name"] for m in result["metrics"]]
    lines = ["", "## Per slice", "",
             "Test rows of the source data and of each ingested batch, every metric with its "
             f"{round(100 * result['confidence'])}% interval over seeds.", "",
             "| method | slice | test rows | " + " | ".join(metrics) + " |",
             "|---|---|---:|" + "---:|" * len(metrics)]
    for r in rows:
        for name, s in r["slices"].items():
            lines.append(f"| {md_text(r['method'])} | {md_text(name)} | {s['n']} | " + " | ".join(_value(s, m) for m in metrics) + " |")
    return "\n".join(lines) + "\n"
