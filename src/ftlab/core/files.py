"""Reading a user's file: what the path is when it is no regular file, and its UTF-8 text.

One check for params files and data files alike; each words its own error around the answer.
"""

from __future__ import annotations

import errno
import re
import stat
from pathlib import Path
from typing import NamedTuple


class FileProblem(NamedTuple):
    """Why a path cannot be read as a file: ``kind`` for the caller to choose its message by, ``words``
    to put in it (e.g. "a FIFO (named pipe)")."""

    kind: str  # missing, url, loop, unreadable, directory, fifo, socket, device or other
    words: str


# a missing path that starts like a URL: Path("https://host/x") is "https:/host/x"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")


def shown(path: Path) -> str:
    """The path as the user wrote it: a URL with its "//" back (Path keeps one slash)."""
    text = str(path)
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]+:)/(?!/)", r"\1//", text) if _URL.match(text) else text


_KINDS = ((stat.S_ISDIR, "directory", "a directory"), (stat.S_ISFIFO, "fifo", "a FIFO (named pipe)"),
          (stat.S_ISSOCK, "socket", "a socket"), (stat.S_ISCHR, "device", "a device"), (stat.S_ISBLK, "device", "a device"))


def file_problem(path: Path) -> FileProblem | None:
    """None for a regular file (or a link to one); otherwise what the path is instead."""
    try:
        mode = path.stat().st_mode
    except OSError as e:
        if e.errno == errno.ELOOP:
            return FileProblem("loop", "a loop of symbolic links (it never reaches a file)")
        if e.errno == errno.ENOENT and _URL.match(str(path)):
            return FileProblem("url", "a URL, not a local file")
        if e.errno == errno.ENOENT:
            return FileProblem("missing", "a symbolic link to a missing file" if path.is_symlink() else "not found")
        return FileProblem("unreadable", f"cannot be read ({e.strerror or e})")
    if stat.S_ISREG(mode):
        return None
    return next((FileProblem(kind, words) for test, kind, words in _KINDS if test(mode)),
                FileProblem("other", "not a regular file"))


class NotUtf8(ValueError):
    """Bytes that are not UTF-8, with where the first bad one is (1-based line and column)."""

    def __init__(self, raw: bytes, error: UnicodeDecodeError):
        self.line = raw.count(b"\n", 0, error.start) + 1
        self.column = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
        self.bad, self.start, self.reason = raw[error.start:error.end], error.start, error.reason
        super().__init__(f"line {self.line}, column {self.column}: not valid UTF-8 ({self.bad!r})")


def utf8_text(raw: bytes) -> str:
    """The text of UTF-8 bytes, without a byte order mark; NotUtf8 saying where they are not UTF-8."""
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise NotUtf8(raw, e) from None
