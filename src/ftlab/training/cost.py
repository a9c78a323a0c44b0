"""What a training run costs besides time: its peak memory while training and its artifact's size."""

from __future__ import annotations

import threading
from pathlib import Path

import psutil


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
