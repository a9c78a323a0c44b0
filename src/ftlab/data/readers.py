"""Readers of the data files a user gives ftlab: CSV, TSV, JSON Lines, JSON arrays and Parquet
(plus the file types a task reads itself, such as CoNLL columns for token classification).

Every reader returns the exact strings in the file (nothing stripped, unquoted or converted) and an
``origin`` column, where each row starts (``path:line``, or ``path record n``), so that every later
error can name the line of the user's file. CSV, TSV and JSON Lines are read as a stream of chunks
(:meth:`Table.chunks`), so a large file is never held whole; :func:`read_table` joins the chunks.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import logging
import numbers
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pandas as pd

from ftlab.core.files import NotUtf8, file_problem, shown, utf8_text
from ftlab.data import delimited
from ftlab.data.jsonfiles import json_array, json_lines
from ftlab.learning.tasks import DataError, Task

log = logging.getLogger(__name__)

SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
DELIMITERS = {".csv": ",", ".tsv": "\t"}
CHUNK_ROWS = 100_000
T = TypeVar("T")
csv.field_size_limit(2**24)  # 16 MiB: long documents are fine; a runaway quote still fails, with its line


class _Fallback(Exception):
    """CSV quoting chosen by ``auto`` failed: read the file again with quotes as plain text."""


@dataclass
class Table:
    """One data file, opened: what kind it is and how it parses. :meth:`read` and :meth:`chunks` read
    it again each time."""

    path: Path
    task: Task
    kind: str  # "delimited", "jsonl" (both streamed), "whole" (Parquet, JSON arrays, task formats)
    survey: delimited.Survey | None = None
    quoted: bool = False  # delimited: CSV quoting (else quotes as plain text)
    quoting: str = "auto"  # as configured
    undecided: bool = False  # auto, some field starts with a quote: CSV quoting until the file disproves it
    optional: tuple[str, ...] = ()  # source columns a record may lack (read as missing values)
    errors: list[str] = field(default_factory=list)

    @property
    def streamed(self) -> bool:
        return self.kind != "whole"

    def read(self, consume: Callable[[Iterator[pd.DataFrame]], T], rows: int = CHUNK_ROWS) -> T:
        """``consume(chunks)``, once more with quotes as plain text when ``auto``'s CSV quoting fails."""
        while True:
            try:
                result = consume(self.chunks(rows))
            except _Fallback:
                self.quoted = False
                continue
            if self.undecided:
                self.undecided = False
                log.info("%s: read %s", self.path, "with CSV quoting (fields in double quotes)" if self.quoted
                         else "with quotes as plain text (no CSV quoting); set data.quoting to choose")
            return result

    def chunks(self, rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
        """The file in frames of up to ``rows`` rows: the task's canonical columns and ``origin``."""
        columns = self.task.source_columns()
        if self.kind == "whole":
            yield _canonical(_read_whole(self.path, self.task), columns, self.path, self.task, optional=self.optional)
            return
        assert self.survey is not None
        if self.kind == "jsonl":
            progress, prefix = delimited.Progress(self.path, self.survey.size), f"{self.path}:"
            with delimited.text_lines(self.path, self.survey) as (lines, position):
                for batch in _batched(json_lines(self.path, lines, _literal(self.task)), rows):
                    progress.tick(position(), batch[-1][0])
                    df = pd.DataFrame.from_records([item for _, item in batch])
                    yield _canonical(df.assign(origin=[prefix + str(n) for n, _ in batch]), columns, self.path, self.task,
                                     optional=self.optional)
            return
        yield from self._delimited_chunks(rows, columns)

    def _delimited_chunks(self, rows: int, columns: dict[str, str]) -> Iterator[pd.DataFrame]:
        assert self.survey is not None
        delimiter, prefix = DELIMITERS[self.path.suffix.lower()], f"{self.path}:"
        try:
            found = delimited.records(self.path, self.survey, delimiter, self.quoted)
            start, header = next(found, (0, []))
            other = delimited.other_delimiter(header, delimiter)
            if other:
                raise DataError(f"{self.path}: the header {header[0]!r} is one column: the file looks delimited by "
                                f"{other!r}; ftlab reads {self.path.suffix} files as delimited by {delimiter!r}: save it so")
            target = self.task.target  # an empty target field is a missing value (an unlabelled row)
            label, empty = self.task.source_columns().get(target) if target else None, True
            for batch in _batched(found, rows):
                values = {c: [f[at] or None if c == label else f[at] for _, f in batch] for at, c in enumerate(header)}
                df = pd.DataFrame({**values, "origin": [prefix + str(line) for line, _ in batch]})
                empty = False
                yield _canonical(df, columns, self.path, self.task, typed=False)
            if empty and start:  # a header alone: its columns are still checked
                yield _canonical(pd.DataFrame(columns=[*header, "origin"]), columns, self.path, self.task)
        except delimited.Refused as e:
            raise DataError(f"{self.path}:{e.line}: {e}") from None
        except delimited.Unparsable as e:
            self.errors.append(f"{'with CSV quoting' if self.quoted else 'with quotes as plain text'}: {e}")
            if self.undecided and self.quoted:
                raise _Fallback from None
            hint = delimited.parse_hint(self.path, self.survey, delimiter, self.quoting,
                                        delimited.first_line(self.path, delimiter))
            raise DataError(f"{self.path}: cannot parse as {_name(delimiter)} ({'; '.join(self.errors)}){hint}") from None


def open_table(path: Path, task: Task, quoting: str = "auto", optional: tuple[str, ...] = ()) -> Table:
    """Check the file and see how it parses (``quoting`` for CSV/TSV, see ``DataConfig.quoting``);
    ``optional``: JSON columns a record may lack (a partly labelled batch, see ftlab.data.ingest)."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES and suffix not in task.file_suffixes:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use one of "
                        f"{sorted([*SUFFIXES, *task.file_suffixes])}")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a data file (data.source names one file, or one per split: "
                        "{train: FILE, validation: FILE, test: FILE})")
    check_regular(path)
    try:
        survey = delimited.survey(path, DELIMITERS.get(suffix, ","))
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None
    if survey.empty:
        raise DataError(f"{path}: file is empty")
    if suffix in task.file_suffixes or suffix == ".parquet" or (suffix == ".json" and _is_array(path)):
        return Table(path, task, "whole", optional=optional)
    if suffix not in DELIMITERS:
        return Table(path, task, "jsonl", dataclasses.replace(survey, lone_cr=None), optional=optional)  # \r: JSON whitespace
    # auto: CSV quoting when some field starts with a quote and the whole file parses that way
    # (Table.read falls back to plain quotes if it does not), else quotes as plain text
    quoted = quoting == "csv" or (quoting == "auto" and survey.quote_starts)
    return Table(path, task, "delimited", survey, quoted, quoting, undecided=quoting == "auto" and survey.quote_starts)


def read_table(path: Path, task: Task, quoting: str = "auto", optional: tuple[str, ...] = ()) -> pd.DataFrame:
    """One file as a DataFrame of the task's canonical columns (``text``, ``label``, ...) and ``origin``."""
    frames = open_table(path, task, quoting, optional).read(list)
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0] if frames else pd.DataFrame()
    if df.empty:
        raise DataError(f"{path}: no rows")
    return df


def _name(delimiter: str) -> str:
    return "TSV" if delimiter == "\t" else "CSV"


def _batched(items: Iterator, n: int) -> Iterator[list]:
    while batch := list(itertools.islice(items, n)):
        yield batch


def _literal(task: Task) -> set[str]:
    """Columns whose JSON numbers stay the text written: the texts, and class labels."""
    return {c for k, c in task.source_columns().items() if k != "label" or task.class_labels}


def _is_array(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(1 << 16).removeprefix(b"\xef\xbb\xbf").lstrip()
    return head.startswith(b"[")


def _read_whole(path: Path, task: Task) -> pd.DataFrame:
    """Files read whole: the task's own formats, Parquet, JSON arrays."""
    if path.suffix.lower() in task.file_suffixes:
        return task.read_file(path)
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq

            names = pq.read_schema(path).names
            twice = [c for c in dict.fromkeys(names) if names.count(c) > 1]
            if twice:
                raise DataError(f"{path}: column {twice[0]!r} appears twice ({names}); give every column its own name")
            df = pd.read_parquet(path)
        except DataError:
            raise
        except Exception as e:  # pyarrow raises its own ArrowInvalid, OSError, ...
            raise DataError(f"{path}: not a readable Parquet file ({e})") from None
        return df.assign(origin=[f"{path} record {i}" for i in range(1, len(df) + 1)])
    try:
        text = utf8_text(path.read_bytes())
    except NotUtf8 as e:
        raise DataError(f"{path}: line {e.line}, column {e.column}: not valid UTF-8 ({e.reason}: "
                        f"{e.bad!r} at byte {e.start}); save the file as UTF-8") from None
    items = json_array(path, text, _literal(task))
    df = pd.DataFrame.from_records(items) if items else pd.DataFrame()
    return df.assign(origin=[f"{path} record {i}" for i in range(1, len(items) + 1)])


def check_regular(path: Path) -> None:
    """A missing file, a symbolic link loop, a FIFO, a socket or a device, each called what it is."""
    problem = file_problem(path)
    if problem is None:
        return
    if problem.kind == "missing":
        dangling = f" ({problem.words})" if path.is_symlink() else ""
        raise DataError(f"data file not found: {path}{dangling}")
    if problem.kind == "url":
        raise DataError(f"{shown(path)} is a URL: ftlab reads local files; download it into data/raw/ and name that "
                        "file (data.source: data/raw/FILE), or give data.source: hub:NAME for a Hugging Face Hub dataset")
    if problem.kind in ("loop", "unreadable"):
        raise DataError(f"{path}: {problem.words}")
    raise DataError(f"{path}: {problem.words}, not a data file; give a regular file")


def _canonical(df: pd.DataFrame, columns: dict[str, str], path: Path, task: Task, typed: bool = True,
               optional: tuple[str, ...] = ()) -> pd.DataFrame:
    """The task's source columns renamed to canonical names, ``origin`` kept; texts of a typed
    source (JSON, Parquet; not CSV, whose fields are all text) checked; an ``optional`` column no
    record has is all missing values."""
    if path.suffix.lower() in task.file_suffixes:
        return df  # the task's reader gives canonical columns itself
    df = df.assign(**{c: None for c in optional if c not in df.columns})
    missing = [c for c in columns.values() if c not in df.columns]
    if missing:
        keys = " / ".join(f"task.{'text' if k == 'tokens' else k}_column" for k in columns)
        raise DataError(f"{path}: missing column(s) {missing}; found {[c for c in df.columns if c != 'origin']} "
                        f"(set {keys})")
    out = df[[*columns.values(), "origin"]].set_axis([*columns, "origin"], axis=1)
    for name in ("text", "text_pair"):
        if name in out and typed:
            _check_text_values(out, path, name, columns[name])
    return out


def _check_text_values(df: pd.DataFrame, path: Path, name: str, column: str) -> None:
    """Texts of a typed source (JSON, Parquet) must be strings or numbers, not lists, objects or booleans
    (a number is kept as its text; the validate stage flags a text column of mostly numbers)."""
    def text_like(v: object) -> bool:
        return v is None or isinstance(v, str) or (isinstance(v, numbers.Real) and not isinstance(v, bool))

    bad = ~df[name].map(text_like).astype(bool)
    if bad.any():
        first = df.loc[bad].iloc[0]
        raise DataError(f"{path}: column {column!r} holds {int(bad.sum())} value(s) that are not text "
                        f"({type(first[name]).__name__}), e.g. at {first['origin']}")

