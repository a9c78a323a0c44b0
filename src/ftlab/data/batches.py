"""New rows after the first training: ``ftlab ingest FILE`` keeps a batch, and prepare trains on it.

A batch is a directory ``<data.batches_dir>/<NNNN>-<name>/`` holding ``rows.parquet`` (the task's
canonical columns and ``origin``, the file and line of each row) and ``batch.json`` (where and when
it came from, the file's SHA-256, its rows, whether it is labelled, and every answer ingest gave:
label ids read as names, new classes, duplicate or unlabelled rows). It is written in a hidden
``.<NNNN>-<name>.tmp-<pid>`` directory and renamed whole, so only a directory named ``NNNN-name``
is a batch; one ingest at a time holds :func:`locked` from numbering to ``dvc add``.

A **labelled** batch joins training: prepare splits each one into train/validation/test with the
data seed (stratified like the source), so the test split always holds the newest distribution,
and tags every prepared row with its ``slice`` (``source`` or the batch's name) for the per-slice
report and the promotion gate. An **unlabelled** batch (no target column) is kept for monitoring
(``ftlab monitor --input <batch>/rows.parquet``) and changes no prepared row.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import psutil

from ftlab.core.config import DataConfig
from ftlab.data.splitting import draw
from ftlab.learning.tasks import Task

log = logging.getLogger(__name__)
SOURCE_SLICE = "source"  # the slice of the rows data.source provided
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
BATCH_DIR = re.compile(r"(\d{4,})-(" + NAME.pattern + ")")
_HELD: set[Path] = set()  # batches_dirs this process holds the lock of
_TEMP = re.compile(r"\.\d{4,}-.+\.(?:tmp|old)-(\d+)")  # what atomic_dir leaves when its process is killed


class Batch(NamedTuple):
    """A labelled batch as prepare reads it: its name (its slice), rows and ``batch.json``."""

    name: str
    rows: pd.DataFrame
    info: dict
    path: Path


def batch_dirs(batches_dir: Path) -> list[Path]:
    """The completed batches, oldest first (their numbered names sort by arrival): ``NNNN-name``
    directories with a ``batch.json``; never a temporary directory a killed ingest left."""
    if not batches_dir.is_dir():
        return []
    return sorted(p for p in batches_dir.iterdir()
                  if BATCH_DIR.fullmatch(p.name) and p.is_dir() and (p / "batch.json").is_file())


@contextmanager
def locked(batches_dir: Path) -> Iterator[None]:
    """One ingest at a time in ``batches_dir``: an exclusive ``flock`` on the directory itself (no lock
    file for git to list), released by the kernel when the holder exits, even by SIGKILL. Re-entrant
    within a process (a second flock there would wait for itself)."""
    batches_dir.mkdir(parents=True, exist_ok=True)
    key = batches_dir.resolve()
    if key in _HELD:
        yield
        return
    fd = os.open(batches_dir, os.O_RDONLY)
    _HELD.add(key)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another ingest into %s to finish", batches_dir)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        _HELD.discard(key)
        os.close(fd)  # closing the descriptor releases the lock


def remove_stale(batches_dir: Path) -> list[Path]:
    """Delete the temporary directories of ingests that were killed (their process is gone); call it
    holding :func:`locked`. Returns what was removed."""
    stale = [p for p in batches_dir.iterdir() if (m := _TEMP.fullmatch(p.name)) and not psutil.pid_exists(int(m[1]))]
    for path in stale:
        log.warning("removing %s, left by an ingest that was killed", path)
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return stale


def read_info(batch: Path) -> dict:
    return json.loads((batch / "batch.json").read_text())


def read_batches(cfg: DataConfig, labelled: bool) -> list[Batch]:
    """Every labelled (or every unlabelled) batch, oldest first."""
    return [Batch(info["name"], pd.read_parquet(b / "rows.parquet"), info, b)
            for b in batch_dirs(cfg.batches_dir) if (info := read_info(b))["labelled"] == labelled]


def labelled(cfg: DataConfig) -> list[Batch]:
    """Every labelled batch, oldest first: what prepare adds to the source's rows."""
    return read_batches(cfg, labelled=True)


def digests(cfg: DataConfig) -> dict[str, str]:
    """{name: SHA-256} of the labelled batches: part of the prepared data's fingerprint (an
    unlabelled batch changes no prepared row, so it leaves training up to date)."""
    return {read_info(b)["name"]: read_info(b)["sha256"] for b in batch_dirs(cfg.batches_dir) if read_info(b)["labelled"]}


def split_batch(df: pd.DataFrame, cfg: DataConfig, strata: Any, seed: int) -> dict[str, pd.DataFrame]:
    """A batch's train/validation/test parts in the source's proportions (``data.validation_size``,
    ``data.test_size``), seeded and stratified; each part keeps at least one row when the batch allows."""
    n = len(df)
    n_test = max(1, round(cfg.test_size * n)) if n >= 3 else 0
    n_validation = max(1, round(cfg.validation_size * n)) if n >= 3 else 0
    test, rest = draw(n, n_test, seed, strata)
    rest_strata = None if strata is None else strata[rest]
    validation, train = draw(len(rest), n_validation, seed, rest_strata)
    return {"train": df.iloc[rest[train]], "validation": df.iloc[rest[validation]], "test": df.iloc[test]}


def row_labels(df: pd.DataFrame, task: Task) -> list[set[str]] | None:
    """Each row's class names (its class, label set or tags), or None for a task without classes."""
    if task.class_labels:
        return [{str(label)} for label in df["label"]]
    sets = task.label_sets(df, "batch")
    return None if sets is None else [set(row) for row in sets]


def trained_first(parts: dict[str, pd.DataFrame], train: pd.DataFrame, task: Task, name: str) -> dict[str, pd.DataFrame]:
    """A batch's parts with its validation and test rows that hold a label no train row has (``train``:
    the rows before it; a class the batch brings, accepted by ``--new-labels``, with too few rows for
    every part) moved to its train part: a label is trained on before it is judged, and prepare would
    refuse a label the train split lacks."""
    known_sets = row_labels(pd.concat([train, parts["train"]]), task)
    if known_sets is None:
        return parts
    known = set().union(*known_sets)
    out = dict(parts)
    for split in ("validation", "test"):
        sets = row_labels(out[split], task) or []
        moved = np.array([not labels <= known for labels in sets], dtype=bool)
        if moved.any():
            new = sorted(set().union(*(labels - known for labels, m in zip(sets, moved, strict=True) if m)))
            log.info("batch %r: %d %s row(s) hold label(s) %s that no train row has: moved to train", name,
                     int(moved.sum()), split, new[:10])
            out["train"] = pd.concat([out["train"], out[split][moved]])
            out[split] = out[split][~moved]
            known |= set(new)
    return out
