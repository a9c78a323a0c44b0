"""The committed sweeps' recommendations, re-read under the non-inferiority rule (issue 35).

    python benchmarks/reread.py

No training: each committed comparison report's rows at the largest train size (with their paired
tests against the best) go through today's :func:`ftlab.analysis.recommend.recommend`, and the old
pick is set beside the new one. Reports written before the rule lack the bootstrap's standard error
and per-seed differences; the power estimate then falls back on the interval's width (normal
approximation) and on the seeds' train times from the report's cells. Writes
``benchmarks/results/reread.{json,md}``.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from ftlab.analysis.recommend import recommend
from ftlab.core.config import ReportConfig

RESULTS = Path(__file__).resolve().parent / "results"
REPORTS = {"sweep_sst2": RESULTS / "sweep_sst2" / "comparison.json"}


def rows_of(report: dict) -> list[dict]:
    """The report's method rows in today's shape (old reports name the primary metric ``accuracy``)."""
    metric = (report.get("primary_metric") or {}).get("name", "accuracy")
    sign = 1.0 if (report.get("primary_metric") or {}).get("higher_is_better", True) else -1.0
    times: dict[str, list[float]] = {}
    size = report["methods"][0]["train_size"]
    for cell in report["cells"]:
        if cell["train_size"] == size:
            times.setdefault(cell["method"], []).append(cell["train_seconds"])
    return [{**row, "primary": row[metric], "score": sign * row[metric],
             "train_seconds_std": statistics.stdev(times[row["method"]]) if len(times[row["method"]]) > 1 else None}
            for row in report["methods"]]


def main() -> None:
    out, lines = {}, ["# Committed recommendations under the non-inferiority rule", "",
                      "`python benchmarks/reread.py`: no training, the committed reports' paired tests re-read.", "",
                      "| report | before | now | why |", "|---|---|---|---|"]
    for name, path in REPORTS.items():
        report = json.loads(path.read_text())
        cfg = ReportConfig(confidence=report.get("confidence", 0.95))
        higher = (report.get("primary_metric") or {}).get("higher_is_better", True)
        rows = rows_of(report)
        now = recommend(rows, cfg, (report.get("primary_metric") or {}).get("label", "accuracy"), higher)
        before = report["recommendation"]["cheapest_within_tolerance"]["method"]
        out[name] = {"before": before, "now": now["cheapest_within_tolerance"]["method"], "text": now["text"],
                     "tolerance": cfg.tolerance, "noninferiority": {r["method"]: r["noninferiority"] for r in rows}}
        lines.append(f"| {name} | {before} | {out[name]['now']} | {now['text']} |")
    (RESULTS / "reread.json").write_text(json.dumps(out, indent=2) + "\n")
    (RESULTS / "reread.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
