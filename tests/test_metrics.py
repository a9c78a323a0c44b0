"""ftlab.learning.metrics counts classification quality with numpy; its numbers are scikit-learn's,
bit for bit (what runs recorded before it stopped importing scikit-learn), on random labels and
predictions: classes missing from either side, unused label names, one class, int32 and int64."""

from __future__ import annotations

import json

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from ftlab.learning.metrics import classification_metrics


def _sklearn(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict:
    ids = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
            "per_class": {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                 "support": int(s[i])} for i, name in enumerate(labels)},
            "confusion_matrix": confusion_matrix(y_true, y_pred, labels=ids).tolist()}


def test_metrics_equal_scikit_learns_bit_for_bit():
    rng = np.random.default_rng(0)
    for trial in range(300):
        classes, n = int(rng.integers(2, 12)), int(rng.integers(1, 200))
        y_true = rng.integers(0, int(rng.integers(1, classes + 1)), n)  # some classes never occur
        y_pred = np.where(rng.random(n) < rng.random(), y_true, rng.integers(0, classes, n))
        if trial % 2:
            y_true = y_true.astype(np.int32)
        labels = [f"c{i}" for i in range(classes)]
        ours, theirs = classification_metrics(y_true, y_pred, labels), _sklearn(y_true, y_pred, labels)
        assert json.dumps(ours) == json.dumps(theirs), (trial, ours, theirs)
        assert classification_metrics(y_true, y_pred) == {k: theirs[k] for k in ("accuracy", "macro_f1")}
