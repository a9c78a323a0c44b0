r"""CSV and TSV files read as a stream of records, in bounded memory, exactly as written.

A first pass over the bytes (16 MiB at a time) finds what the parse needs to know of the whole file:
whether it is empty, whether some field starts with a quote (``data.quoting: auto``), and whether a
lone ``\r`` occurs (a lone ``\r`` is text, not a line end: pandas and csv.writer write it unquoted,
so it is swapped for a private-use character the file does not hold while ``csv`` parses). Then
:func:`records` yields ``(first line, fields)`` one record at a time, and a caller can stop at any
record: nothing holds the file.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ftlab.learning.tasks import DataError

log = logging.getLogger(__name__)
BLOCK = 1 << 24
PROGRESS_SECONDS = 10.0  # a long read logs how far it got this often
_PRIVATE = re.compile(rb"\xee[\x80-\x81][\x80-\xbf]")  # U+E000..U+E07F in UTF-8: the stand-in candidates


class Unparsable(Exception):
    """The file does not parse with this quoting (another may read it)."""

    def __init__(self, line: int, message: str):
        super().__init__(f"line {line}: {message}")


class Refused(Exception):
    """A file that parses but cannot be right whatever the quoting: ``line``, message."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class Survey:
    """What the parse needs to know of the whole file, from one pass over its bytes."""

    size: int
    empty: bool
    quote_starts: bool  # some field starts with a double quote
    lone_cr: str | None  # the stand-in for a lone \r, or None when there is none


def survey(path: Path, delimiter: str) -> Survey:
    delim = re.escape(delimiter.encode())
    quote = re.compile(rb'(?:\n|' + delim + rb')"')
    lone = re.compile(rb"\r(?!\n)")
    empty, quotes, cr, tail, size = True, False, False, b"", 0
    used: set[bytes] = set()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            if not size:
                block_start = block.removeprefix(b"\xef\xbb\xbf")
                quotes = block_start.lstrip(b"\r\n").startswith(b'"')
            size += len(block)
            empty = empty and not block.strip()
            both = tail + block
            quotes = quotes or bool(quote.search(both))
            cr = cr or bool(lone.search(both[:-1] if block else both))  # a \r last in a block: decided next time
            used.update(m.group() for m in _PRIVATE.finditer(both))
            tail = block[-2:]
    cr = cr or tail.endswith(b"\r")
    stand_in = next(chr(c) for c in range(0xE000, 0xE080) if chr(c).encode() not in used) if cr else None
    return Survey(size, empty, quotes, stand_in)


class Progress:
    """Logs how far a long read got, at most every PROGRESS_SECONDS."""

    def __init__(self, path: Path, size: int):
        self.path, self.size, self.started = path, size, time.monotonic()
        self.last = self.started

    def tick(self, done: int, lines: int) -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS_SECONDS:
            self.last = now
            log.info("%s: read %.0f of %.0f MB (%.0f%%), %d lines, %.0f s", self.path, done / 1e6, self.size / 1e6,
                     100 * done / max(self.size, 1), lines, now - self.started)


def _slow_lines(path: Path, survey: Survey, done: list[int]) -> Iterator[str]:
    """The file's lines one by one, each lone \r swapped for the stand-in; a bad byte is named by
    line and column (also the error path of :func:`text_lines`)."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}: line {number}, column {e.start + 1}: not valid UTF-8 ({e.reason}: "
                                f"{raw[e.start:e.end]!r} at byte {done[0] + e.start}); save the file as UTF-8") from None
            if number == 1:
                line = line.removeprefix("\ufeff")
            if survey.lone_cr and "\r" in line:
                line = re.sub(r"\r(?!\n)", survey.lone_cr, line)
            done[0] += len(raw)
            yield line


@contextmanager
def text_lines(path: Path, survey: Survey) -> Iterator[tuple[Iterator[str], Callable[[], int]]]:
    """The file's lines (split at \n only, decoded, a byte-order mark dropped) and how many bytes
    were read so far. Without a lone \r the lines come from a text reader that csv iterates in C;
    a bad byte then reads the file again line by line to name its line and column."""
    done = [0]
    if survey.lone_cr:
        yield _slow_lines(path, survey, done), lambda: done[0]
        return
    with open(path, "rb") as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="\n") as text:
        try:
            yield text, raw.tell
        except UnicodeDecodeError:
            for _ in _slow_lines(path, survey, done):
                pass
            raise


def records(path: Path, survey: Survey, delimiter: str, quoted: bool, header: bool = True) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) of every record, the header first; blank lines skipped. ``quoted``: fields
    in double quotes with inner quotes doubled; otherwise a quote is an ordinary character. A header
    repeated further down (two exports joined) and a column named twice are refused with their line.
    ``header=False``: the first record is a row like the others (every record as wide as it)."""
    progress = Progress(path, survey.size)
    with text_lines(path, survey) as (source, position):
        reader = csv.reader(source, delimiter=delimiter, strict=True,
                            quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE)
        names: list[str] | None = None  # the header's fields, which a later row must not repeat
        last, width, end = "", 0, 0
        try:
            for fields in reader:
                start, end = end + 1, reader.line_num
                if not start & 0x3FFF:
                    progress.tick(position(), end)
                if not fields:
                    continue
                if survey.lone_cr:
                    fields = [f.replace(survey.lone_cr, "\r") for f in fields]
                if not width:
                    width = len(fields)
                    if header:
                        _check_header(fields, start)
                        names, last = [_bare(f) for f in fields], _bare(fields[-1])
                elif len(fields) != width:
                    raise Unparsable(start, f"{len(fields)} field(s) where the {'header' if header else 'first row'} "
                                            f"has {width}")
                elif names is not None and fields[-1].strip() == last and [_bare(f) for f in fields] == names:
                    raise Refused(start, f"repeats the header {delimiter.join(names)!r} (two files joined?); "
                                         "remove the line, or the rows below it if they are a copy")
                yield start, fields
        except csv.Error as e:
            raise Unparsable(end + 1, str(e)) from None


def _bare(field: str) -> str:
    """A header field as compared with a later row: surrounding spaces and a byte-order mark aside."""
    return field.strip().lstrip("\ufeff").strip()


def _check_header(header: list[str], line: int) -> None:
    twice = [c for c in dict.fromkeys(header) if header.count(c) > 1]
    if twice:
        raise Refused(line, f"column {twice[0]!r} appears twice in the header {header}; give every column its own name")


def other_delimiter(header: list[str], delimiter: str) -> str | None:
    """A delimiter a one-field header seems to use instead of the file type's (``;`` in a .csv)."""
    if len(header) != 1:
        return None
    return next((d for d in (";", "\t", "|", ",") if d != delimiter and d in header[0]), None)


def parses(path: Path, survey: Survey, delimiter: str, quoted: bool, header: bool = True) -> bool:
    """Whether the whole file parses with this quoting."""
    try:
        for _ in records(path, survey, delimiter, quoted, header):
            pass
    except (Unparsable, Refused):
        return False
    return True


def parse_hint(path: Path, survey: Survey, delimiter: str, quoting: str, header: list[str]) -> str:
    """What to try when no quoting reads the file: another delimiter, or the other data.quoting
    setting, only when it would read the file."""
    other = other_delimiter(header, delimiter)
    if other:
        return f"; the header is one column and looks delimited by {other!r}: save the file with {delimiter!r}"
    if quoting in ("csv", "none"):
        alternative = "none" if quoting == "csv" else "csv"
        if parses(path, survey, delimiter, alternative == "csv"):
            return f"; data.quoting is {quoting}: data.quoting: {alternative} reads it"
    return ""


def first_line(path: Path, delimiter: str) -> list[str]:
    with open(path, "rb") as f:
        return f.readline().decode("utf-8", errors="replace").removeprefix("\ufeff").rstrip("\r\n").split(delimiter)
