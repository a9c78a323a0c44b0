"""Readers of the data files a user gives ftlab: CSV, TSV, JSON Lines, JSON arrays and Parquet
(plus the file types a task reads itself, such as CoNLL columns for token classification).

Every reader returns the exact strings in the file (nothing stripped, unquoted or converted) and an
``origin`` column, where each row starts (``path:line``, or ``path record n``), so that every later
error can name the line of the user's file.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import numbers
import re
from pathlib import Path

import pandas as pd

from ftlab.tasks import DataError, Task

log = logging.getLogger(__name__)

SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
DELIMITERS = {".csv": ",", ".tsv": "\t"}
csv.field_size_limit(2**24)  # 16 MiB: long documents are fine; a runaway quote still fails, with its line


def read_table(path: Path, task: Task, quoting: str = "auto") -> pd.DataFrame:
    """One file as a DataFrame of the task's canonical columns (``text``, ``label``, ...) and
    ``origin``. ``quoting`` applies to CSV and TSV files (see ``DataConfig.quoting``)."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES and suffix not in task.file_suffixes:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use one of "
                        f"{sorted([*SUFFIXES, *task.file_suffixes])}")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a data file (data.source names one file, or one per split: "
                        "{train: FILE, validation: FILE, test: FILE})")
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None
    if not raw.strip():
        raise DataError(f"{path}: file is empty")
    if suffix in task.file_suffixes:
        df = task.read_file(path)
    else:
        columns = task.source_columns()
        if suffix == ".parquet":
            df = _read_parquet(path)
        elif suffix in DELIMITERS:
            df = _read_delimited(path, _decode(path, raw), DELIMITERS[suffix], quoting, task.opts.label_column)
        else:
            df = _read_json(path, _decode(path, raw))
        df = _canonical(df, columns, path)
    if df.empty:
        raise DataError(f"{path}: no rows")
    return df


def _canonical(df: pd.DataFrame, columns: dict[str, str], path: Path) -> pd.DataFrame:
    """The task's source columns renamed to canonical names, ``origin`` kept; texts checked."""
    missing = [c for c in columns.values() if c not in df.columns]
    if missing:
        keys = " / ".join(f"task.{'text' if k == 'tokens' else k}_column" for k in columns)
        raise DataError(f"{path}: missing column(s) {missing}; found {[c for c in df.columns if c != 'origin']} "
                        f"(set {keys})")
    out = df[[*columns.values(), "origin"]].set_axis([*columns, "origin"], axis=1)
    for name in ("text", "text_pair"):
        if name in out:
            _check_text_values(out, path, name, columns[name])
    return out


def _decode(path: Path, raw: bytes) -> str:
    """The file's text (UTF-8, a byte-order mark dropped), or an error naming the line and column."""
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(f"{path}: line {line}, column {column}: not valid UTF-8 ({e.reason}: "
                        f"{raw[e.start:e.end]!r} at byte {e.start}); save the file as UTF-8") from None


class _Unparsable(Exception):
    def __init__(self, line: int, message: str):
        super().__init__(f"line {line}: {message}")


def _parse_delimited(text: str, delimiter: str, quoted: bool) -> tuple[list[str], list[tuple[int, list[str]]]]:
    r"""Header and (first line, fields) of every record; blank lines are skipped. ``quoted``: fields
    in double quotes, quotes inside them doubled (Python's csv and pandas' default); otherwise a quote
    is an ordinary character and no field can hold the delimiter or a line break.

    Lines end at \n (or \r\n). A lone \r is text: pandas and csv.writer(lineterminator="\n") write
    it unquoted, and a reader that ended the line there would silently cut the text in two.
    """
    lone_cr = None
    if "\r" in text:
        lone_cr = next(c for c in map(chr, range(0xE000, 0xF900)) if c not in text)  # a private-use stand-in
        text = re.sub(r"\r(?!\n)", lone_cr, text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True,
                        quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE)
    header: list[str] | None = None
    records: list[tuple[int, list[str]]] = []
    end = 0
    try:
        for fields in reader:
            start, end = end + 1, reader.line_num
            if not fields:
                continue
            if lone_cr:
                fields = [f.replace(lone_cr, "\r") for f in fields]
            if header is None:
                header = fields
                continue
            if len(fields) != len(header):
                raise _Unparsable(start, f"{len(fields)} field(s) where the header has {len(header)}")
            records.append((start, fields))
    except csv.Error as e:
        raise _Unparsable(end + 1, str(e)) from None
    return header or [], records


def _read_delimited(path: Path, text: str, delimiter: str, quoting: str, label: str) -> pd.DataFrame:
    """A CSV or TSV file. ``quoting``: "csv", "none", or "auto": CSV quoting when some field starts
    with a quote and the whole file parses that way (a file written by csv.writer or pandas), else
    quotes as plain text (GLUE-style raw TSV, where a text may start with a lone quote)."""
    name = "TSV" if delimiter == "\t" else "CSV"
    if quoting == "auto" and not re.search(f'(?:^|{re.escape(delimiter)})"', text, re.MULTILINE):
        quoting = "none"  # no field starts with a quote: both ways read the same
    tries = ["csv", "none"] if quoting == "auto" else [quoting]
    errors = []
    for how in tries:
        try:
            header, records = _parse_delimited(text, delimiter, quoted=how == "csv")
            break
        except _Unparsable as e:
            errors.append(f"{'with CSV quoting' if how == 'csv' else 'with quotes as plain text'}: {e}")
    else:
        hint = ("set data.quoting: csv for a file with quoted fields, none for a raw file" if quoting == "auto"
                else f"data.quoting is {quoting}; the other setting may read it")
        raise DataError(f"{path}: cannot parse as {name} ({'; '.join(errors)}); {hint}")
    if quoting == "auto":
        log.info("%s: read %s", path, "with CSV quoting (fields in double quotes)" if how == "csv"
                 else "with quotes as plain text (no CSV quoting); set data.quoting to choose")
    values: dict[str, object] = {}  # every column: a missing one is named by _canonical, with its params key
    for column in dict.fromkeys(header):
        at = header.index(column)
        if column == label:
            values[column] = _labels(pd.Series([fields[at] or None for _, fields in records], dtype=object))
        else:
            values[column] = [fields[at] for _, fields in records]
    return pd.DataFrame({**values, "origin": [f"{path}:{line}" for line, _ in records]})


def _labels(values: pd.Series) -> pd.Series:
    """Label strings as numbers when every one is a plain number (so 2 sorts before 10), else as read."""
    present = values.dropna()
    if not len(present) or not present.str.fullmatch(r"[-+]?\d+(?:\.\d+)?").all():
        return values
    return pd.to_numeric(present).reindex(values.index)


def _read_json(path: Path, text: str) -> pd.DataFrame:
    """JSON Lines (one object per line), or for ``.json`` a JSON array of objects."""
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {e.lineno}, column {e.colno}: not valid JSON ({e.msg})") from None
        where = [f"{path} record {i}" for i in range(1, len(items) + 1)]
        bad = next((w for w, item in zip(where, items, strict=True) if not isinstance(item, dict)), None)
        if bad:
            raise DataError(f"{bad}: expected a JSON object with the text and label fields")
    else:
        items, where = [], []
        for number, line in enumerate(text.split("\n"), 1):  # not splitlines(): U+2028 is valid inside JSON
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: line {number}, column {e.colno}: not valid JSON ({e.msg}); "
                                "JSON Lines needs one object per line") from None
            if not isinstance(item, dict):
                raise DataError(f"{path}: line {number}: expected a JSON object, got {type(item).__name__}")
            items.append(item)
            where.append(f"{path}:{number}")
    df = pd.DataFrame.from_records(items) if items else pd.DataFrame()
    df["origin"] = where
    return df


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises its own ArrowInvalid, OSError, ...
        raise DataError(f"{path}: not a readable Parquet file ({e})") from None
    df["origin"] = [f"{path} record {i}" for i in range(1, len(df) + 1)]
    return df


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


def sniff_quoting(path: Path, delimiter: str, sample_bytes: int = 1 << 20) -> int:
    """The ``csv`` quoting of a CSV/TSV file judged from its first MiB, for readers that stream it:
    CSV quoting when a field starts with a quote (as written by csv.writer or pandas), else none
    (GLUE-style raw TSV). The whole-file readers above decide from the whole file."""
    with open(path, "rb") as f:
        head = f.read(sample_bytes).decode("utf-8", errors="replace")
    quoted = re.search(f'(?:^|{re.escape(delimiter)})"', head, re.MULTILINE)
    return csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE
