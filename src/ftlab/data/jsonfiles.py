"""JSON Lines and JSON array files: objects read strictly, numbers kept as written where they are text.

A key given twice in one object is an error (JSON parsers keep the last silently), and a number in a
text or class label column keeps the text it was written with (``1e5`` stays ``1e5``, ``1.10``
stays ``1.10``); elsewhere (scores, ids in lists) it is a number.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from ftlab.learning.tasks import DataError


class _Number(str):
    """A JSON number as written, until :func:`settle` decides what it becomes."""


class _DuplicateKey(Exception):
    pass


def _pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) < len(keys):
        raise _DuplicateKey(next(k for k in keys if keys.count(k) > 1))
    return dict(pairs)


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_float=_Number, parse_int=_Number)


def settle(value: object, literal: bool) -> object:
    """JSON numbers as their text where ``literal``, else as numbers (also inside lists and objects)."""
    if isinstance(value, _Number):
        return str(value) if literal else (int(value) if re.fullmatch(r"-?\d+", value) else float(value))
    if isinstance(value, list):
        return [settle(v, False) for v in value]
    if isinstance(value, dict):
        return {k: settle(v, False) for k, v in value.items()}
    return value


def _settled(item: dict, literal: set[str]) -> dict:
    return {k: settle(v, k in literal) for k, v in item.items()}


def json_line(path: Path, number: int, line: str, literal: set[str]) -> dict | None:
    """One line of a JSON Lines file as an object (None for a blank line), or an error naming it."""
    if not line.strip():
        return None
    try:
        item = _DECODER.decode(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: line {number}, column {e.colno}: not valid JSON ({e.msg}); "
                        "JSON Lines needs one object per line") from None
    except _DuplicateKey as e:
        raise DataError(f"{path}:{number}: the key {e.args[0]!r} twice in one object (JSON would keep "
                        "only the last); give each field once") from None
    if not isinstance(item, dict):
        raise DataError(f"{path}: line {number}: expected a JSON object, got {type(settle(item, False)).__name__}")
    return _settled(item, literal)


def json_lines(path: Path, lines: Iterator[str], literal: set[str]) -> Iterator[tuple[int, dict]]:
    """(line number, object) of every non-blank line."""
    for number, line in enumerate(lines, 1):
        item = json_line(path, number, line.removesuffix("\n"), literal)
        if item is not None:
            yield number, item


def json_array(path: Path, text: str, literal: set[str]) -> list[dict]:
    """A JSON array of objects (a whole-file read: arrays are not streamed)."""
    try:
        items = _DECODER.decode(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: line {e.lineno}, column {e.colno}: not valid JSON ({e.msg})") from None
    except _DuplicateKey as e:
        raise DataError(f"{path}: an object holds the key {e.args[0]!r} twice (JSON would keep only the "
                        "last); give each field once") from None
    bad = next((i for i, item in enumerate(items, 1) if not isinstance(item, dict)), None)
    if bad:
        raise DataError(f"{path} record {bad}: expected a JSON object with the text and label fields")
    return [_settled(item, literal) for item in items]
