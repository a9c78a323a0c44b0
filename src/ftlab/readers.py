"""Readers of the data files a user gives ftlab: CSV, TSV, JSON Lines, JSON arrays and Parquet
(plus the file types a task reads itself, such as CoNLL columns for token classification).

Every reader returns the exact strings in the file (nothing stripped, unquoted or converted) and an
``origin`` column, where each row starts (``path:line``, or ``path record n``), so that every later
error can name the line of the user's file.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import logging
import numbers
import re
import stat
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
    _check_regular(path)
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
            literal = {c for k, c in columns.items() if k != "label" or task.name == "classification"}
            df = _read_json(path, _decode(path, raw), literal)
        df = _canonical(df, columns, path)
    if df.empty:
        raise DataError(f"{path}: no rows")
    return df


def _check_regular(path: Path) -> None:
    """A missing file, a symbolic link loop, a FIFO, a socket or a device, each called what it is."""
    try:
        mode = path.stat().st_mode
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise DataError(f"{path}: a loop of symbolic links (it never reaches a file)") from None
        if e.errno == errno.ENOENT:
            dangling = " (a symbolic link to a missing file)" if path.is_symlink() else ""
            raise DataError(f"data file not found: {path}{dangling}") from None
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None
    if not stat.S_ISREG(mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        raise DataError(f"{path}: {kind}, not a data file; give a regular file")


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


class _Refused(Exception):
    """A file that parses but cannot be right whatever the quoting: ``line``, ``message``."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line


def _parse_delimited(text: str, delimiter: str, quoted: bool) -> tuple[list[str], list[tuple[int, list[str]]]]:
    r"""Header and (first line, fields) of every record; blank lines are skipped. ``quoted``: fields
    in double quotes, quotes inside them doubled (Python's csv and pandas' default); otherwise a quote
    is an ordinary character and no field can hold the delimiter or a line break.

    Lines end at \n (or \r\n). A lone \r is text: pandas and csv.writer(lineterminator="\n") write
    it unquoted, and a reader that ended the line there would silently cut the text in two. A
    header repeated further down (two exports concatenated) is refused with its line.
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
                _check_header(header, start)
                continue
            if fields == header or [fields[0].removeprefix("\ufeff"), *fields[1:]] == header:
                raise _Refused(start, f"repeats the header {delimiter.join(header)!r} (two files joined?); "
                                      "remove the line, or the rows below it if they are a copy")
            if len(fields) != len(header):
                raise _Unparsable(start, f"{len(fields)} field(s) where the header has {len(header)}")
            records.append((start, fields))
    except csv.Error as e:
        raise _Unparsable(end + 1, str(e)) from None
    return header or [], records


def _check_header(header: list[str], line: int) -> None:
    twice = [c for c in dict.fromkeys(header) if header.count(c) > 1]
    if twice:
        raise _Refused(line, f"column {twice[0]!r} appears twice in the header {header}; "
                             "give every column its own name")


def _other_delimiter(header: list[str], delimiter: str) -> str | None:
    """A delimiter the one-field header seems to use instead of the file type's (``;`` in a .csv)."""
    if len(header) != 1:
        return None
    return next((d for d in (";", "\t", "|", ",") if d != delimiter and d in header[0]), None)


def _read_delimited(path: Path, text: str, delimiter: str, quoting: str, label: str) -> pd.DataFrame:
    """A CSV or TSV file. ``quoting``: "csv", "none", or "auto": CSV quoting when some field starts
    with a quote and the whole file parses that way (a file written by csv.writer or pandas), else
    quotes as plain text (GLUE-style raw TSV, where a text may start with a lone quote)."""
    name = "TSV" if delimiter == "\t" else "CSV"
    quotes = bool(re.search(f'(?:^|{re.escape(delimiter)})"', text, re.MULTILINE))
    tries = ([quoting] if quoting != "auto" else ["csv", "none"] if quotes else ["none"])
    errors = []
    try:
        for how in tries:
            try:
                header, records = _parse_delimited(text, delimiter, quoted=how == "csv")
                break
            except _Unparsable as e:
                errors.append(f"{'with CSV quoting' if how == 'csv' else 'with quotes as plain text'}: {e}")
        else:
            first_line = text.split("\n", 1)[0].split(delimiter)
            hint = _parse_hint(text, delimiter, quoting, first_line)
            raise DataError(f"{path}: cannot parse as {name} ({'; '.join(errors)}){hint}")
    except _Refused as e:
        raise DataError(f"{path}:{e.line}: {e}") from None
    other = _other_delimiter(header, delimiter)
    if other:
        raise DataError(f"{path}: the header {header[0]!r} is one column: the file looks delimited by {other!r}; "
                        f"ftlab reads {path.suffix} files as {name} ({delimiter!r}): save it with {delimiter!r}")
    if quoting == "auto" and quotes:
        log.info("%s: read %s", path, "with CSV quoting (fields in double quotes)" if how == "csv"
                 else "with quotes as plain text (no CSV quoting); set data.quoting to choose")
    values: dict[str, object] = {}  # every column: a missing one is named by _canonical, with its params key
    for at, column in enumerate(header):
        values[column] = [fields[at] or None if column == label else fields[at] for _, fields in records]
    return pd.DataFrame({**values, "origin": [f"{path}:{line}" for line, _ in records]})


def _parse_hint(text: str, delimiter: str, quoting: str, first_line: list[str]) -> str:
    """What to try when no quoting reads the file: another delimiter, or the other data.quoting
    setting, only when it would read the file."""
    other = _other_delimiter(first_line, delimiter)
    if other:
        return f"; the header is one column and looks delimited by {other!r}: save the file with {delimiter!r}"
    if quoting in ("csv", "none"):
        alternative = "none" if quoting == "csv" else "csv"
        try:
            _parse_delimited(text, delimiter, quoted=alternative == "csv")
            return f"; data.quoting is {quoting}: data.quoting: {alternative} reads it"
        except (_Unparsable, _Refused):
            return ""
    return ""


class _Number(str):
    """A JSON number as written (``1e5``, ``1.10``), until _settle decides what it becomes."""


class _DuplicateKey(Exception):
    pass


def _pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) < len(keys):
        raise _DuplicateKey(next(k for k in keys if keys.count(k) > 1))
    return dict(pairs)


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_float=_Number, parse_int=_Number)


def _settle(value: object, literal: bool) -> object:
    """JSON numbers as their text where ``literal`` (a text or class label column: ``1e5`` stays
    ``1e5``), else as numbers (scores, ids in lists, ...)."""
    if isinstance(value, _Number):
        return str(value) if literal else (int(value) if re.fullmatch(r"-?\d+", value) else float(value))
    if isinstance(value, list):
        return [_settle(v, False) for v in value]
    if isinstance(value, dict):
        return {k: _settle(v, False) for k, v in value.items()}
    return value


def _read_json(path: Path, text: str, literal: set[str]) -> pd.DataFrame:
    """JSON Lines (one object per line), or for ``.json`` a JSON array of objects. The columns in
    ``literal`` keep a number as the text it was written with; a key twice in one object is an error."""
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            items = _DECODER.decode(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {e.lineno}, column {e.colno}: not valid JSON ({e.msg})") from None
        except _DuplicateKey as e:
            raise DataError(f"{path}: an object holds the key {e.args[0]!r} twice (JSON would keep only the "
                            "last); give each field once") from None
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
                item = _DECODER.decode(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: line {number}, column {e.colno}: not valid JSON ({e.msg}); "
                                "JSON Lines needs one object per line") from None
            except _DuplicateKey as e:
                raise DataError(f"{path}:{number}: the key {e.args[0]!r} twice in one object (JSON would keep "
                                "only the last); give each field once") from None
            if not isinstance(item, dict):
                raise DataError(f"{path}: line {number}: expected a JSON object, got {type(_settle(item, False)).__name__}")
            items.append(item)
            where.append(f"{path}:{number}")
    items = [{k: _settle(v, k in literal) for k, v in item.items()} for item in items]
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
