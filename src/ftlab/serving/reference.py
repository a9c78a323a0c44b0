"""The monitor's reference rows, ``reference.parquet`` of a promoted model directory."""

from __future__ import annotations

from pathlib import Path

REFERENCE_ROWS = 1000


def reference(run: Path, out: Path) -> None:
    """The monitor's reference: up to 1,000 scored test rows (a seeded sample). Held-out rows, not
    training rows: on its own training rows the model is more confident and more accurate than on
    any new data, and fresh samples of the training distribution were flagged as drift on
    confidence against them (benchmarks/monitor.py). The rows are the task's own predictions frame,
    which holds what each task's monitor reads (:mod:`ftlab.serving.monitor_tasks`): the text and a
    pair's second text, the label as prepared, and the prediction with its scores (class or label
    probabilities; a regressor's score; an NER model's words and tag ids)."""
    import pandas as pd

    rows = pd.read_parquet(run / "predictions.parquet")
    if len(rows) > REFERENCE_ROWS:
        rows = rows.sample(n=REFERENCE_ROWS, random_state=0).sort_index()
    rows.to_parquet(out, index=False)
