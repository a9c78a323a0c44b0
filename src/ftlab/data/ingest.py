"""``ftlab ingest FILE``: keep a batch of new rows under ``data.batches_dir`` (see :mod:`ftlab.data.batches`).

The file is read with the training readers and refused, naming the file and line, for every reason
a training file would be; the batch directory appears whole or not at all, and nothing else changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from ftlab.core.config import DataConfig
from ftlab.core.io import atomic_dir
from ftlab.data.batches import SOURCE_SLICE, batch_dirs, read_info
from ftlab.data.prepare import check_blank, check_raw
from ftlab.data.readers import read_table
from ftlab.learning.tasks import DataError, Task

log = logging.getLogger(__name__)


class TextsOnly:
    """The task, reading only its text columns: an unlabelled batch is read with the training readers."""

    def __init__(self, task: Task):
        self.task = task

    def __getattr__(self, name: str) -> Any:
        return getattr(self.task, name)

    def source_columns(self) -> dict[str, str]:
        return {k: v for k, v in self.task.source_columns().items() if k != "label"}


def _columns(path: Path) -> list[str]:
    """The column names of a CSV/TSV/JSON Lines/Parquet file, from its header or first record."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        if suffix in (".csv", ".tsv"):
            return list(pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", nrows=0).columns)
        with open(path, encoding="utf-8") as f:
            first = next((line for line in f if line.strip()), "{}")
        if suffix == ".jsonl":
            return list(json.loads(first))
    except (OSError, ValueError, UnicodeDecodeError):
        return []  # the reader below names what is wrong with the file, with its line
    return []


def read_batch(path: Path, task: Task, quoting: str = "auto") -> tuple[pd.DataFrame, bool]:
    """The batch's rows in the task's columns and whether it is labelled (it has the label column);
    refused, with the file and line, for the reasons a training file is."""
    labelled = task.opts.label_column in _columns(path) or path.suffix.lower() in task.file_suffixes
    df = read_table(path, task if labelled else TextsOnly(task), quoting)  # type: ignore[arg-type]
    if labelled:
        return check_raw({str(path): df}, task)[str(path)], True  # the source's checks: labels, blank texts, ...
    check_blank(df, str(path))
    return df, False


def _digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def ingested(path: Path, cfg: DataConfig) -> Path | None:
    """The batch that already holds this file (same SHA-256), if any."""
    sha = _digest(Path(path))
    return next((b for b in batch_dirs(cfg.batches_dir) if read_info(b)["sha256"] == sha), None)


def ingest(path: Path, task: Task, cfg: DataConfig, name: str | None = None) -> dict:
    """Keep the batch ``path`` under ``cfg.batches_dir``; returns its ``batch.json``. The same file
    twice is refused (it would count its rows twice), and so is a name already taken."""
    path = Path(path)
    df, labelled = read_batch(path, task, cfg.quoting)
    if (known := ingested(path, cfg)) is not None:
        raise DataError(f"{path}: already ingested as {known} (same SHA-256): nothing to add")
    existing = batch_dirs(cfg.batches_dir)
    name = name or re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-") or "batch"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or name == SOURCE_SLICE:
        raise DataError(f"--name {name!r}: use letters, digits, '.', '_' and '-', not {SOURCE_SLICE!r}")
    if any(read_info(b)["name"] == name for b in existing):
        raise DataError(f"--name {name!r}: a batch of that name exists in {cfg.batches_dir}; choose another")
    number = 1 + max((int(b.name.split("-", 1)[0]) for b in existing if b.name.split("-", 1)[0].isdigit()), default=0)
    info = {"name": name, "number": number, "source": str(path), "sha256": _digest(path), "rows": len(df), "labelled": labelled,
            "ingested_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    out = cfg.batches_dir / f"{number:04d}-{name}"
    with atomic_dir(out) as tmp:
        df.to_parquet(tmp / "rows.parquet", index=False)
        (tmp / "batch.json").write_text(json.dumps(info, indent=2) + "\n")
    log.info("ingested %d %s rows from %s as %s", len(df), "labelled" if labelled else "unlabelled", path, out)
    return {**info, "dir": str(out)}
