"""``prepare`` of a classification source made of CSV, TSV or JSON Lines files, in bounded memory.

Two passes over each file, a chunk of rows at a time. The first cleans and checks every row (blank
texts, missing labels, labels that print alike) and keeps only one class code per row; the split
is then planned from those codes (:func:`ftlab.data.splitting.plan`). The second reads the file again
and writes each row the plan keeps straight into its split's Parquet file. Nothing holds the file,
``data.max_train_samples`` keeps memory smaller still, and the result is the one
:func:`ftlab.data.split` gives on the file read whole, whatever the chunk size (tests/test_data_files.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ftlab.core.builtins import SPLITS
from ftlab.core.config import DataConfig
from ftlab.data.labels import LabelCleaner, is_blank, order_key
from ftlab.data.readers import CHUNK_ROWS, Table
from ftlab.data.splitting import Plan, plan
from ftlab.learning.tasks import DataError, Task

BUCKET_ROWS = 250_000  # rows of a split reordered in memory at once


@dataclass
class _Scan:
    """What the first pass keeps of one file: a class code per row (in first-seen order) and the
    rows that cannot be used (count, first five places) per check."""

    codes: list[np.ndarray] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    bad: dict[str, tuple[int, list[str]]] = field(default_factory=dict)

    def note(self, check: str, mask: np.ndarray, origins: pd.Series) -> None:
        if mask.any():
            count, where = self.bad.get(check, (0, []))
            self.bad[check] = (count + int(mask.sum()), (where + list(origins[mask][:5]))[:5])

    def ranked(self) -> tuple[np.ndarray, list[str]]:
        """Each row's class as its rank in label order (what splits stratify on), and the labels in that order."""
        labels = sorted(self.seen, key=order_key)
        rank = np.empty(len(self.seen) + 1, dtype=np.int32)
        rank[[self.seen[label] for label in labels]] = np.arange(len(labels))
        rank[-1] = -1
        codes = np.concatenate(self.codes) if self.codes else np.zeros(0, dtype=np.int32)
        return rank[codes], labels


def _scan(table: Table, split: str, cleaner: LabelCleaner, rows: int) -> _Scan:
    """Pass 1 over one file (again from the start if ``auto`` quoting falls back to plain quotes)."""
    def scan_chunks(chunks: Iterator[pd.DataFrame]) -> tuple[_Scan, LabelCleaner]:
        scan, mine = _Scan(), LabelCleaner()
        for chunk in chunks:
            origins = chunk["origin"].reset_index(drop=True)
            labels = pd.Series(mine.clean(chunk["label"], origins, split, scan.rows))
            for column, what in (("text", "text(s)"), ("text_pair", "text pair(s)")):
                if column in chunk:
                    values = chunk[column].reset_index(drop=True)
                    scan.note(f"null or blank {what}", (values.isna() | values.map(is_blank).astype(bool)).to_numpy(),
                              origins)
            scan.note("null label(s)", labels.isna().to_numpy(), origins)
            for label in pd.unique(labels.dropna()):
                scan.seen.setdefault(label, len(scan.seen))
            scan.codes.append(labels.map(scan.seen).fillna(-1).to_numpy(dtype=np.int32))
            scan.rows += len(chunk)
        return scan, mine

    scan, mine = table.read(scan_chunks, rows)
    cleaner.absorb(mine)
    return scan


def _check(scans: dict[str, _Scan]) -> None:
    """The errors :func:`ftlab.data.check_raw` raises, in its order, with the whole file's counts."""
    for split, scan in scans.items():
        for check in ("null or blank text(s)", "null or blank text pair(s)"):
            if check in scan.bad:
                count, where = scan.bad[check]
                raise DataError(f"{split}: {count} {check}, e.g. {', '.join(where)}")
        if "null label(s)" in scan.bad:
            raise DataError(f"{split}: null label(s), e.g. {', '.join(scan.bad['null label(s)'][1])}")


def _names(rows: Plan, ranked: dict[str, tuple[np.ndarray, list[str]]]) -> list[str]:
    """The classes of train (after subsampling), in label order; other splits' labels must occur there."""
    source, positions = rows["train"]
    codes, labels = ranked[source]
    names = [labels[c] for c in np.unique(codes[positions])]
    if len(names) < 2:
        raise DataError(f"train: a single class ({names[0]!r}); classification needs at least 2")
    for split in SPLITS[1:]:
        source, positions = rows[split]
        codes, labels = ranked[source]
        unknown = sorted({labels[c] for c in np.unique(codes[positions])} - set(names))
        if unknown:
            raise DataError(f"{split}: labels {unknown[:5]} do not occur in train (known: {sorted(names)})")
    return names


def prepare_streamed(tables: dict[str, Table], cfg: DataConfig, task: Task, seed: int, out: Path,
                     rows: int = CHUNK_ROWS) -> tuple[dict[str, int], list[str]]:
    """Write ``out/{train,validation,test}.parquet`` from ``tables`` (the source's files by split),
    reading ``rows`` rows at a time; the rows of each split and the label names."""
    cleaner = LabelCleaner()
    scans = {split: _scan(table, split, cleaner, rows) for split, table in tables.items()}
    cleaner.finish()
    _check(scans)
    ranked = {split: scan.ranked() for split, scan in scans.items()}
    planned = plan({s: scan.rows for s, scan in scans.items()}, {s: r[0] for s, r in ranked.items()}, cfg, seed)
    names = _names(planned, ranked)
    _write(tables, planned, ranked, names, task, out, rows)
    return {split: len(planned[split][1]) for split in SPLITS}, names


def _write(tables: dict[str, Table], planned: Plan, ranked: dict[str, tuple[np.ndarray, list[str]]],
           names: list[str], task: Task, out: Path, rows: int) -> None:
    """Pass 2: each kept row, in file order, into the bucket of its split that holds its place in the
    split's order (BUCKET_ROWS places each); then each split's buckets in turn, sorted, into its file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [c for c in ("text", "text_pair") if c in task.source_columns()]
    schema = pa.schema([*((c, pa.string()) for c in texts), ("label", pa.int64()), ("origin", pa.string())])
    ranked_schema = schema.append(pa.field("_place", pa.int64()))
    buckets: dict[tuple[int, int], Any] = {}
    try:
        for source, table in tables.items():
            codes, labels = ranked[source]
            label_id = np.array([names.index(label) if label in names else -1 for label in labels] + [-1])
            goes = np.full(len(codes), -1, dtype=np.int8)  # the split index each row goes to
            place = np.zeros(len(codes), dtype=np.int64)  # and its place in that split's order
            for k, split in enumerate(SPLITS):
                if planned[split][0] == source:
                    goes[planned[split][1]] = k
                    place[planned[split][1]] = np.arange(len(planned[split][1]))
            start = 0
            for chunk in table.chunks(rows):
                end = start + len(chunk)
                here, ids, at = goes[start:end], label_id[codes[start:end]], place[start:end]
                for k in np.unique(here[here >= 0]):
                    keep = here == k
                    for b in np.unique(at[keep] // BUCKET_ROWS):
                        sel = keep & (at // BUCKET_ROWS == b)
                        columns: dict[str, np.ndarray] = {c: chunk[c].to_numpy()[sel] for c in texts}
                        columns["label"] = ids[sel].astype(np.int64)
                        columns["origin"] = chunk["origin"].to_numpy()[sel]
                        columns["_place"] = at[sel]
                        if (k, b) not in buckets:
                            buckets[(k, b)] = pq.ParquetWriter(out / f".{SPLITS[k]}.{b}.parquet", ranked_schema)
                        buckets[(k, b)].write_table(pa.Table.from_pandas(pd.DataFrame(columns), schema=ranked_schema,
                                                                         preserve_index=False))
                start = end
    finally:
        for writer in buckets.values():
            writer.close()
    for k, split in enumerate(SPLITS):
        with pq.ParquetWriter(out / f"{split}.parquet", schema) as writer:
            for b in sorted(b for kk, b in buckets if kk == k):
                part = pq.read_table(out / f".{split}.{b}.parquet")
                writer.write_table(part.take(pa.compute.sort_indices(part["_place"])).drop_columns(["_place"]))
                (out / f".{split}.{b}.parquet").unlink()
