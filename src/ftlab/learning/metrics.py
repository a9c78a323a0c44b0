"""Classification quality from labels and predictions. scikit-learn is imported inside the function,
so a stage that only imports this module does not pay for it."""

from __future__ import annotations

from typing import Any

import numpy as np


def classification_metrics(y_true, y_pred, labels: list[str] | None = None) -> dict:
    """Accuracy and macro-F1; with label names also per-class precision/recall and the confusion matrix."""
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
        out["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=ids).tolist()
    return out
