"""Quality and cost measurements shared by training, evaluation and benchmarks.

torch and scikit-learn are imported where they are used: the compare stage reads ``flat`` from
here, and importing both would add 3.5 s to it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import psutil


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


class PeakMemory:
    """Peak memory while the block runs: allocated on GPU, else the process RSS (sampled every 20 ms).

    RSS is sampled rather than read from ``ru_maxrss`` because the lifetime peak of a process would
    include model loading and every earlier run in the same process.
    """

    _peak: int  # bytes; set in __enter__, then raised by the sampling thread

    def __init__(self, interval: float = 0.02):
        import torch

        self.interval = interval
        self._cuda = torch.cuda if torch.cuda.is_available() else None
        self.kind = "cuda_allocated" if self._cuda else "rss"
        self.peak_mb = 0.0
        self._stop = threading.Event()

    def _sample(self) -> None:
        proc = psutil.Process()
        while not self._stop.is_set():
            self._peak = max(self._peak, proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        if self._cuda:
            self._cuda.reset_peak_memory_stats()
        self._peak = psutil.Process().memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        peak = self._cuda.max_memory_allocated() if self._cuda else self._peak
        self.peak_mb = peak / 2**20


def dir_bytes(path: Path) -> int:
    """Total size of the files under ``path``."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
