"""Classification quality from labels and predictions. scikit-learn is imported inside the function,
so a stage that only imports this module does not pay for it."""

from __future__ import annotations

from typing import Any

import numpy as np

# A confusion matrix grows with the square of the classes: 5,000 classes made a 225 MB metrics.json
# that took 25 s to write. Up to this many classes it is written whole; beyond, the most frequent
# confusions are (a list that stays TOP_CONFUSIONS long whatever the classes).
MAX_CONFUSION_CLASSES = 50
TOP_CONFUSIONS = 50


def classification_metrics(y_true, y_pred, labels: list[str] | None = None) -> dict:
    """Accuracy and macro-F1; with label names also per-class precision/recall and the confusion
    matrix (``top_confusions`` instead beyond MAX_CONFUSION_CLASSES classes)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    out: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }
    if labels is not None:
        ids = list(range(len(labels)))
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
        out["per_class"] = {
            name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, name in enumerate(labels)
        }
        if len(labels) <= MAX_CONFUSION_CLASSES:
            out["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=ids).tolist()
        else:
            out["top_confusions"] = top_confusions(y_true, y_pred, labels)
    return out


def top_confusions(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str], k: int = TOP_CONFUSIONS) -> list[dict]:
    """The ``k`` most frequent (true, predicted) pairs of the wrong predictions, most frequent first
    (ties by true then predicted class id), counted without a classes-by-classes matrix."""
    wrong = y_true != y_pred
    pairs, counts = np.unique(np.stack([y_true[wrong], y_pred[wrong]], axis=1), axis=0, return_counts=True)
    order: np.ndarray = np.lexsort((pairs[:, 1], pairs[:, 0], -counts))[:k]
    return [{"true": labels[pairs[i, 0]], "predicted": labels[pairs[i, 1]], "count": int(counts[i])} for i in order]
