"""From drift to labels: which unlabelled new rows a person should label first.

On an unlabelled batch the monitor writes a labelling queue: the rows the model is least sure of
(lowest top-class probability: uncertainty sampling) and the rows least like its training data
(largest cosine distance from the nearest reference row in the model's own sentence embeddings),
half and half, each with the reason and its score. ``labelling_queue.csv`` opens in a spreadsheet:
fill its empty label column with label names and it reads back as a labelled data file (the
columns are the model's training text and label columns). ``labelling_queue.label-studio.json``
imports into Label Studio as tasks with the model's prediction pre-filled, with the labelling
interface of its labels in ``labelling_queue.label-studio.xml``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ftlab.core.escape import html_text
from ftlab.core.io import write_json, write_text


def novelty(current: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cosine distance from each current row to its nearest reference row (0: a reference row's twin)."""
    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    return 1.0 - (unit(current) @ unit(reference).T).max(axis=1)


def labelling_queue(texts: list[str], prediction: np.ndarray, confidence: np.ndarray, distance: np.ndarray,
                    size: int) -> pd.DataFrame:
    """Up to ``size`` rows: the least confident and the most novel alternately, each row once."""
    unsure = list(np.argsort(confidence, kind="stable"))
    novel = list(np.argsort(-distance, kind="stable"))
    chosen: dict[int, str] = {}
    while len(chosen) < min(size, len(texts)):
        for order, why in ((unsure, "least sure"), (novel, "least like the training data")):
            while order and order[0] in chosen:
                order.pop(0)
            if order and len(chosen) < size:
                chosen[order.pop(0)] = why
    rows = list(chosen)
    return pd.DataFrame({"row": rows, "text": [texts[i] for i in rows], "prediction": prediction[rows],
                         "confidence": confidence[rows].round(4), "novelty": distance[rows].round(4),
                         "why": [chosen[i] for i in rows]})


def write_queue(queue: pd.DataFrame, out_dir: Path, meta: dict) -> dict[str, str]:
    """The spreadsheet (the model's text and label columns first, the label empty) and the Label
    Studio import; returns their paths."""
    text_column, label_column = meta["text_column"], meta["label_column"]
    sheet = queue.rename(columns={"text": text_column}).assign(**{label_column: ""})
    sheet = sheet[[text_column, label_column, "prediction", "confidence", "novelty", "why", "row"]]
    csv, studio = Path(out_dir) / "labelling_queue.csv", Path(out_dir) / "labelling_queue.label-studio.json"
    write_text(csv, sheet.to_csv(index=False))
    write_json(studio, [
        {"data": {"text": r.text, "row": int(r.row), "why": r.why},
         "predictions": [{"model_version": meta.get("method", "ftlab"), "score": float(r.confidence),
                          "result": [{"from_name": "label", "to_name": "text", "type": "choices",
                                      "value": {"choices": [str(r.prediction)]}}]}]}
        for r in queue.itertuples()])
    choices = "".join(f'<Choice value="{html_text(name)}"/>' for name in meta["labels"])
    config = Path(out_dir) / "labelling_queue.label-studio.xml"
    write_text(config, f'<View><Text name="text" value="$text"/><Choices name="label" toName="text">{choices}</Choices></View>\n')
    return {"csv": str(csv), "label_studio": str(studio), "label_studio_config": str(config)}
