"""Classification quality from labels and predictions, counted with numpy: the same arithmetic as
scikit-learn's ``accuracy_score``, ``f1_score(average="macro", zero_division=0)``,
``precision_recall_fscore_support`` and ``confusion_matrix`` (bit for bit, tests/test_metrics.py),
without importing scikit-learn and scipy (about a second, in every training process)."""

from __future__ import annotations

from typing import Any

import numpy as np

# A confusion matrix grows with the square of the classes: 5,000 classes made a 225 MB metrics.json
# that took 25 s to write. Up to this many classes it is written whole; beyond, the most frequent
# confusions are (a list that stays TOP_CONFUSIONS long whatever the classes).
MAX_CONFUSION_CLASSES = 50
TOP_CONFUSIONS = 50


def classification_metrics(y_true, y_pred, labels: list[str] | None = None) -> dict:
    """Accuracy and macro-F1 (over the classes that occur in either array, as scikit-learn's); with
    label names also per-class precision/recall and the confusion matrix (``top_confusions`` instead
    beyond MAX_CONFUSION_CLASSES classes)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"labels and predictions must be 1-d and of one length: {y_true.shape} vs {y_pred.shape}")
    out: dict[str, Any] = {
        "accuracy": float(np.average(y_true == y_pred)),
        "macro_f1": float(np.average(_prf(y_true, y_pred, np.union1d(y_true, y_pred))[2])),
    }
    if labels is not None:
        ids = np.arange(len(labels))
        p, r, f, s = _prf(y_true, y_pred, ids)
        out["per_class"] = {
            name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, name in enumerate(labels)
        }
        if len(labels) <= MAX_CONFUSION_CLASSES:
            (t, t_known), (q, q_known) = _index(y_true, ids), _index(y_pred, ids)
            known = t_known & q_known  # as confusion_matrix(labels=ids): a pair with another value is left out
            flat = np.bincount(t[known] * len(ids) + q[known], minlength=len(ids) ** 2)
            out["confusion_matrix"] = flat.reshape(len(ids), len(ids)).tolist()
        else:
            out["top_confusions"] = top_confusions(y_true, y_pred, labels)
    return out


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator in float64, 0 where the denominator is 0 (zero_division=0)."""
    zero = denominator == 0
    result = np.asarray(numerator, dtype=np.float64) / np.where(zero, 1, denominator).astype(np.float64)
    result[zero] = 0.0
    return result


def _index(values: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each value's position in the sorted ``classes``, and whether it is one of them."""
    at = np.searchsorted(classes, values).clip(0, max(len(classes) - 1, 0))
    return at, classes[at] == values if len(classes) else np.zeros(len(values), dtype=bool)


def _prf(y_true: np.ndarray, y_pred: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per class of ``classes``: precision, recall, F1 and support, each ratio 0 where undefined."""
    def counts(values: np.ndarray) -> np.ndarray:
        at, known = _index(values, classes)
        return np.bincount(at[known], minlength=len(classes))

    tp, pred, true = counts(y_true[y_true == y_pred]), counts(y_pred), counts(y_true)
    f1 = _divide(2 * tp.astype(np.float64), true.astype(np.float64) + pred.astype(np.float64))
    return _divide(tp, pred), _divide(tp, true), f1, true


def top_confusions(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str], k: int = TOP_CONFUSIONS) -> list[dict]:
    """The ``k`` most frequent (true, predicted) pairs of the wrong predictions, most frequent first
    (ties by true then predicted class id), counted without a classes-by-classes matrix."""
    wrong = y_true != y_pred
    pairs, counts = np.unique(np.stack([y_true[wrong], y_pred[wrong]], axis=1), axis=0, return_counts=True)
    order: np.ndarray = np.lexsort((pairs[:, 1], pairs[:, 0], -counts))[:k]
    return [{"true": labels[pairs[i, 0]], "predicted": labels[pairs[i, 1]], "count": int(counts[i])} for i in order]
