"""New rows after the first training: ``ftlab ingest FILE`` keeps a batch, and prepare trains on it.

A batch is a directory ``<data.batches_dir>/<NNNN>-<name>/`` holding ``rows.parquet`` (the task's
canonical columns and ``origin``, the file and line of each row) and ``batch.json`` (where and when
it came from, the file's SHA-256, its rows, whether it is labelled). It is written whole or not at
all, read with the training readers and refused for the same reasons a training file is.

A **labelled** batch joins training: prepare splits each one into train/validation/test with the
data seed (stratified like the source), so the test split always holds the newest distribution,
and tags every prepared row with its ``slice`` (``source`` or the batch's name) for the per-slice
report and the promotion gate. An **unlabelled** batch (no label column) is kept for monitoring
(``ftlab monitor --input <batch>/rows.parquet``) and changes no prepared row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from ftlab.core.config import DataConfig
from ftlab.data.splitting import draw

SOURCE_SLICE = "source"  # the slice of the rows data.source provided


def batch_dirs(batches_dir: Path) -> list[Path]:
    """The batches, oldest first (their numbered names sort by arrival)."""
    if not batches_dir.is_dir():
        return []
    return sorted(p for p in batches_dir.iterdir() if p.is_dir() and (p / "batch.json").is_file())


def read_info(batch: Path) -> dict:
    return json.loads((batch / "batch.json").read_text())


def labelled(cfg: DataConfig) -> list[tuple[str, pd.DataFrame]]:
    """(name, rows) of every labelled batch, oldest first: what prepare adds to the source's rows."""
    return [(read_info(b)["name"], pd.read_parquet(b / "rows.parquet"))
            for b in batch_dirs(cfg.batches_dir) if read_info(b)["labelled"]]


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
