"""New rows for ``ftlab predict`` and ``ftlab monitor``, read by the training readers' rules.

What ``prepare`` reads is what predict scores: every field is the exact text in the file (``NA``,
``null`` and a text holding a NUL byte are texts, as in training, where pandas read the first two as
missing and cut the third at the NUL), CSV quoting is decided as ``data.quoting: auto`` decides it,
and every error names the file and line. A path that is no readable file (missing, a URL, a loop of
symbolic links, a FIFO, a directory), an empty file and a header without rows are refused by name
before any model loads. CSV, TSV and JSON Lines are streamed a chunk of rows at a time
(:func:`ftlab.data.delimited.records`, :func:`ftlab.data.jsonfiles.json_lines`), Parquet by record
batches; a JSON array is read whole, as training reads it.

The monitor reads a file of any size in bounded memory: every row's text is checked as it streams
by, and a uniform random sample of at most ``monitor.max_rows`` rows is kept (reservoir sampling,
seeded, so the same file gives the same sample).
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ftlab.core.files import NotUtf8, file_problem, shown, utf8_text
from ftlab.data import delimited
from ftlab.data.jsonfiles import json_array, json_lines
from ftlab.data.labels import is_blank
from ftlab.data.readers import DELIMITERS, SUFFIXES, Table, open_table
from ftlab.learning.tasks import TASKS, DataError

CHUNK_ROWS = 8192


@dataclass
class Chunk:
    """Rows of one file: every column as read, indexed by row number (0: the first row), and where
    each row starts (``path:line``, or ``path record n``)."""

    frame: pd.DataFrame
    origins: list[str]


@dataclass
class Sample(Chunk):
    """The rows kept of an input (in input order) and how many rows the input holds."""

    read: int = 0


def check_input(path: Path) -> None:
    """Fail before any model is loaded when the input cannot be read at all, naming what it is."""
    problem = file_problem(path)
    if problem is not None and problem.kind == "url":
        raise DataError(f"--input {shown(path)} is a URL: ftlab reads local files; download it first "
                        "(e.g. `curl -o new.csv URL`) and give that file")
    if problem is not None and problem.kind in ("loop", "unreadable"):
        raise DataError(f"{path}: {problem.words}")
    if problem is not None and problem.kind != "missing":
        raise DataError(f"{path}: {problem.words}, not a data file; give a regular file")
    if path.suffix.lower() not in SUFFIXES:
        raise DataError(f"{path}: unsupported file type {path.suffix.lower()!r}; use one of {sorted(SUFFIXES)}")
    if problem is not None:
        raise DataError(f"input file not found: {path}" + (f" ({problem.words})" if path.is_symlink() else ""))


def open_input(path: Path, header: bool = True, text_column: str = "text", label_column: str = "label") -> Table:
    """The input opened by the training reader (``label_column``: blank fields there are missing labels),
    with ``auto`` quoting settled by one parse of the whole file when some field starts with a quote:
    a reader that writes as it reads cannot start over with the other quoting."""
    check_input(path)
    if not header and path.suffix.lower() not in DELIMITERS:
        raise DataError(f"{path}: --no-header applies to CSV and TSV files; {path.suffix.lower()} files name their columns")
    kind = TASKS["classification"]
    table = open_table(path, kind(kind.Options(type="classification", text_column=text_column, label_column=label_column)))
    if table.undecided and table.survey is not None:
        table.quoted = delimited.parses(path, table.survey, DELIMITERS[path.suffix.lower()], True, header)
        table.undecided = False
    return table


def read_chunks(path: Path, chunk_rows: int = CHUNK_ROWS, header: bool = True, text_column: str = "text",
                label_column: str = "label") -> Iterator[Chunk]:
    """The rows of a CSV/TSV/JSONL/JSON/Parquet file, ``chunk_rows`` at a time; a header alone is one
    empty chunk. ``header=False``: a CSV/TSV file's first line is a row, its columns named "1", "2", ..."""
    table, start = open_input(path, header, text_column, label_column), 0
    for frame, origins in _frames(table, chunk_rows, header):
        yield Chunk(frame.set_axis(pd.RangeIndex(start, start + len(frame))), origins)
        start += len(frame)


def _frames(table: Table, rows: int, header: bool) -> Iterator[tuple[pd.DataFrame, list[str]]]:
    path = table.path
    if path.suffix.lower() == ".parquet":
        yield from _parquet(path, rows)
    elif table.kind == "whole":  # a JSON array
        try:
            items = json_array(path, utf8_text(path.read_bytes()), _literal(table))
        except NotUtf8 as e:
            raise DataError(f"{path}: {e}; save the file as UTF-8") from None
        yield pd.DataFrame.from_records(items), [f"{path} record {i}" for i in range(1, len(items) + 1)]
    elif table.kind == "jsonl":
        assert table.survey is not None
        with delimited.text_lines(path, table.survey) as (lines, _):
            for batch in _batched(json_lines(path, lines, _literal(table)), rows):
                yield pd.DataFrame.from_records([item for _, item in batch]), [f"{path}:{n}" for n, _ in batch]
    else:
        yield from _delimited(table, rows, header)


def _literal(table: Table) -> set[str]:
    """JSON numbers kept as written in the text and label columns, as training keeps them."""
    return {table.task.opts.text_column, table.task.opts.label_column}


def _parquet(path: Path, rows: int) -> Iterator[tuple[pd.DataFrame, list[str]]]:
    import pyarrow.parquet as pq

    start = 0
    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
            yield batch.to_pandas(), [f"{path} record {i}" for i in range(start + 1, start + batch.num_rows + 1)]
            start += batch.num_rows
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(f"{path}: not a readable Parquet file ({e})") from None


def _delimited(table: Table, rows: int, header: bool) -> Iterator[tuple[pd.DataFrame, list[str]]]:
    """CSV/TSV records as :meth:`ftlab.data.readers.Table.chunks` reads them, every column kept."""
    path, survey, label = table.path, table.survey, table.task.opts.label_column
    assert survey is not None
    delimiter = DELIMITERS[path.suffix.lower()]
    try:
        found = delimited.records(path, survey, delimiter, table.quoted, header)
        start, names = next(found, (0, []))
        if header and delimited.other_delimiter(names, delimiter):
            raise DataError(f"{path}: the header {names[0]!r} is one column: the file looks delimited by "
                            f"{delimited.other_delimiter(names, delimiter)!r}; save it delimited by {delimiter!r}")
        if not header and start:
            found, names = itertools.chain([(start, names)], found), [str(i) for i in range(1, len(names) + 1)]
        empty = True
        for batch in _batched(found, rows):
            values = {c: [f[at] or None if c == label else f[at] for _, f in batch] for at, c in enumerate(names)}
            empty = False
            yield pd.DataFrame(values), [f"{path}:{line}" for line, _ in batch]
        if empty and start:
            yield pd.DataFrame(columns=names), []
    except delimited.Refused as e:
        raise DataError(f"{path}:{e.line}: {e}") from None
    except delimited.Unparsable as e:
        hint = delimited.parse_hint(path, survey, delimiter, "auto", delimited.first_line(path, delimiter))
        quoting = "with CSV quoting" if table.quoted else "with quotes as plain text"
        raise DataError(f"{path}: cannot parse ({quoting}: {e}){hint}") from None


def _batched(items: Iterator, n: int) -> Iterator[list]:
    while batch := list(itertools.islice(items, n)):
        yield batch


def _place(origin: str, path: Path) -> str:
    """``line 4`` of ``path:4``, ``record 3`` of ``path record 3``."""
    rest = origin.removeprefix(str(path))
    return f"line {rest[1:]}" if rest.startswith(":") else rest.strip()


def texts_of(chunk: Chunk, path: Path, column: str, header: bool = True) -> list[str]:
    """The column to score as strings; names the file, rows and lines of values that cannot be scored
    (missing, blank as training judges it, or no text: a list, an object, a boolean)."""
    df = chunk.frame
    if column not in df.columns:
        raise DataError(f"{path}: no column {column!r} (found {list(df.columns)}); name the text column with "
                        "--text-column" + ("" if header else " (without a header, columns are numbered 1, 2, ...)"))
    values = df[column]
    for what, bad in (("value(s) that are not text", ~values.map(_text_like).astype(bool)),
                      ("empty or missing text(s)", (values.isna() | values.map(is_blank)).astype(bool))):
        if bad.any():
            at = np.flatnonzero(bad.to_numpy())[:5]
            where = ", ".join(f"row {df.index[i]} ({_place(chunk.origins[i], path)})" for i in at)
            raise DataError(f"{path}: {int(bad.sum())} {what} in column {column!r} cannot be scored: {where}")
    return [v if isinstance(v, str) else str(v) for v in values]


def _text_like(value: object) -> bool:
    return value is None or isinstance(value, str) or (isinstance(value, numbers.Real) and not isinstance(value, bool))


def sample(files: list[Path], max_rows: int, header: bool = True, text_column: str = "text",
           label_column: str = "label", seed: int = 0) -> Sample:
    """A uniform random sample of at most ``max_rows`` rows of ``files`` (reservoir sampling: memory
    holds the sample and one chunk, whatever the files' size), in input order; every row's text is
    checked on the way (:func:`texts_of`)."""
    rng, read = np.random.default_rng(seed), 0
    kept: list[tuple[int, dict, str]] = []  # (row number in the input, row, origin) per slot
    for path in files:
        for chunk in read_chunks(path, CHUNK_ROWS, header, text_column, label_column):
            if not len(chunk.frame):
                continue
            texts_of(chunk, path, text_column, header)
            at = np.arange(read, read + len(chunk.frame))
            slot = np.where(at < max_rows, at, rng.integers(0, at + 1))  # row t replaces slot j < max_rows
            take = np.flatnonzero(slot < max_rows)
            records = chunk.frame.iloc[take].to_dict("records")
            for i, j, record in zip(take, slot[take], records, strict=True):
                entry = (int(at[i]), record, chunk.origins[i])
                if j == len(kept):
                    kept.append(entry)
                else:
                    kept[j] = entry
            read += len(chunk.frame)
    kept.sort(key=lambda entry: entry[0])
    frame = pd.DataFrame([r for _, r, _ in kept], index=pd.Index([n for n, _, _ in kept], dtype=int))
    return Sample(frame, [o for _, _, o in kept], read)
