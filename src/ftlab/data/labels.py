"""Class labels as the user wrote them, and what "blank" and "prints alike" mean.

A class label is its text: ``01`` is not ``1`` and ``1.0`` is not ``1`` (a warning says when two
labels are the same number written differently). A label the file types (a JSON or Parquet number,
a boolean) is the text of that value; a JSON number keeps the text it was written with. Surrounding
whitespace and invisible characters (a lone ``\\r`` at a line end, a zero-width space) are removed,
and so is one leading apostrophe, a spreadsheet's text marker (``'pos`` is ``pos``; a label that
really starts with an apostrophe loses it too), and labels are composed to Unicode NFC; a warning
says which of these changed a label and counts its rows. Two labels that still print alike (``neg``
and ``ne\\u200bg``) are an error naming both and their lines. So no two classes ftlab trains on look
the same in a report. Labels written as the ids 0..k-1 of known label names are read as the names by
:func:`as_known` (as ``ftlab monitor`` reads them).
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections import defaultdict
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from ftlab.learning.tasks import DataError

log = logging.getLogger(__name__)
# letters and symbols that render as nothing (Hangul fillers, braille blank, Khmer inherent vowels)
_BLANK_LETTERS = "\u115f\u1160\u17b4\u17b5\u2800\u3164\uffa0"
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


# every character that shows nothing: whitespace, format and control characters (zero-width spaces and
# joiners, byte-order marks, bidi marks) and blank letters; as invisible_chars() computes it (Unicode 14)
INVISIBLE = '[\x00-\\ \x7f-\xa0\xad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u115f-\u1160\u1680\u17b4-\u17b5\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u2800\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]'


def invisible_chars() -> str:
    """INVISIBLE computed from the Unicode database (0.4 s: the constant is what ftlab uses)."""
    ranges: list[list[int]] = []
    for code in range(0x110000):
        ch = chr(code)
        if ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zs", "Zl", "Zp") or ch in _BLANK_LETTERS:
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1][1] = code
            else:
                ranges.append([code, code])
    return "[" + "".join(re.escape(chr(a)) + (f"-{re.escape(chr(b))}" if b > a else "") for a, b in ranges) + "]"


@cache
def _invisible() -> re.Pattern[str]:
    return re.compile(f"{INVISIBLE}*")


@cache
def _edges() -> re.Pattern[str]:
    return re.compile(f"^{INVISIBLE}+|{INVISIBLE}+$")


def is_blank(value: Any) -> bool:
    """Whether a text shows no visible character (empty, spaces, zero-width characters, ...)."""
    return isinstance(value, str) and _invisible().fullmatch(value) is not None


def printed(label: str) -> str:
    """What a label looks like when printed: compatibility-normalised, invisible characters removed."""
    return re.sub(INVISIBLE, "", unicodedata.normalize("NFKC", label))


def label_text(value: Any) -> str | None:
    """A label value as its text, or None when missing (None, NaN, pandas' NA)."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, str):
        return str(value)  # plain str, also for a JSON number read as its text
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "true" if value else "false"
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        f = float(value)
        if math.isnan(f):
            return None
        return str(int(f)) if f.is_integer() and abs(f) < 2**53 else repr(f)
    return str(value.item() if hasattr(value, "item") else value)


def _steps(text: str) -> tuple[str, str, str]:
    """A label after each cleaning step: invisible edges removed, a leading apostrophe (a spreadsheet's
    text marker) removed, composed to NFC."""
    bare = _edges().sub("", text)
    unmarked = _edges().sub("", bare[1:]) if bare.startswith("'") else bare
    return bare, unmarked, unicodedata.normalize("NFC", unmarked)


def normalise(text: str) -> str:
    """The class a written label names ("" for a blank one); see the module docstring."""
    return _steps(text)[2]


def changes(text: str) -> list[str]:
    """What :func:`normalise` changed in ``text``, in words (for the warning that says so)."""
    bare, unmarked, composed = _steps(text)
    done = [(bare != text, "surrounding whitespace or invisible characters removed"),
            (unmarked != bare, "a leading apostrophe, a spreadsheet's text marker, removed"),
            (composed != unmarked, "composed to Unicode NFC (a letter and its combining accent as one character)")]
    return [words for changed, words in done if changed]


def is_number(label: str) -> bool:
    """Whether a label is written as a number (then label ids could be mistaken for it)."""
    return _NUMBER.fullmatch(label) is not None


def order_key(name: str) -> tuple[int, float, str]:
    """Label ids in number order when labels are numbers (2 before 10), else in text order."""
    if _NUMBER.fullmatch(name):
        return (0, float(name), name)
    return (1, 0.0, name)


class LabelCleaner:
    """Labels cleaned a chunk at a time (:meth:`clean`), then judged as a whole (:meth:`finish`):
    the same result whatever the chunks."""

    def __init__(self) -> None:
        self.changed: dict[tuple[str, str], tuple[int, list[str]]] = {}  # (written, cleaned) -> rows, where
        self.first: dict[str, tuple[str, int]] = {}  # cleaned label -> (first place, rows)

    def clean(self, values: pd.Series, origins: pd.Series | None, split: str, offset: int = 0) -> np.ndarray:
        """The labels as text (None where missing), invisible edges removed; ``offset``: the position
        of the first value in its split (for rows without an origin)."""
        values = pd.Series(values, dtype=object).reset_index(drop=True)
        nested = values.map(lambda v: isinstance(v, (list, tuple, dict, np.ndarray))).to_numpy(dtype=bool)
        if nested.any():
            row = int(np.flatnonzero(nested)[0])
            raise DataError(f"{origins.iloc[row] if origins is not None else f'{split} row {offset + row}'}: the label "
                            f"{values.iloc[row]!r} is a {type(values.iloc[row]).__name__}; classification takes one label "
                            "per row (task.type: multilabel takes several)")
        if any(type(v) is bool or type(v).__name__ == "bool_" for v in values):  # True == 1 to a hash table
            values = values.map(lambda v: label_text(v) if type(v) is bool or type(v).__name__ == "bool_" else v)
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        cleaned: list[str | None] = []
        counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
        for u, value in enumerate(uniques):
            text = label_text(value)
            new = normalise(text) if text is not None else None
            at = np.flatnonzero(codes == u)[:3]
            where = [origins.iloc[i] if origins is not None else f"{split} row {offset + i}" for i in at]
            if text is not None and new != text:
                rows, places = self.changed.get((text, new or ""), (0, []))
                self.changed[(text, new or "")] = (rows + int(counts[u]), (places + where)[:3])
            new = new or None  # a label of whitespace only is a missing label
            if new is not None:
                place, rows = self.first.get(new, (where[0], 0))
                self.first[new] = (place, rows + int(counts[u]))
            cleaned.append(new)
        return np.array([*cleaned, None], dtype=object)[codes]

    def absorb(self, other: LabelCleaner) -> None:
        """Add what ``other`` saw (a later file, cleaned on its own) to this cleaner."""
        for key, (rows, where) in other.changed.items():
            mine, places = self.changed.get(key, (0, []))
            self.changed[key] = (mine + rows, (places + where)[:3])
        for label, (place, rows) in other.first.items():
            mine_place, mine = self.first.get(label, (place, 0))
            self.first[label] = (mine_place, mine + rows)

    def finish(self) -> None:
        """Warn about every label changed, and judge the labels as a whole (see _check_distinct)."""
        for (text, new), (rows, where) in self.changed.items():
            log.warning("label %r read as %r (%s): %d row(s), e.g. %s", text, new or None, "; ".join(changes(text)),
                        rows, ", ".join(where))
        _check_distinct(self.first)


def clean_labels(splits: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Every split's ``label`` column as text (None where missing), invisible edges removed with a
    warning; an error when two different labels print alike; warnings for labels that are the same
    number, or differ only in case."""
    cleaner = LabelCleaner()
    out = {split: df.assign(label=cleaner.clean(df["label"], df["origin"] if "origin" in df else None, split))
           for split, df in splits.items()}
    cleaner.finish()
    return out


def as_known(labels: list[str], names: list[str]) -> tuple[list[str], dict[str, str], list[str]]:
    """Cleaned labels read against known class ``names`` (in label id order) as ``ftlab monitor`` reads
    them: names as they are, or, when every label is an id 0..k-1 and no name is itself a number, the
    names of those ids. Returns the labels, the id -> name map applied ({} when none) and the labels
    that are neither (new classes, in label order) for the caller to refuse or accept."""
    found = set(labels)
    by_id = {str(i): name for i, name in enumerate(names)}
    if not found <= set(names) and not any(map(is_number, names)) and found <= set(by_id):
        return [by_id[x] for x in labels], {i: n for i, n in by_id.items() if i in found}, []
    return list(labels), {}, sorted(found - set(names), key=order_key)


def codes(labels: np.ndarray | pd.Series) -> np.ndarray:
    """Each label's rank among the split's distinct labels in label order (what splits stratify on)."""
    values, inverse = np.unique(np.asarray(labels, dtype=object).astype(str), return_inverse=True)
    rank = np.empty(len(values), dtype=np.int32)
    rank[sorted(range(len(values)), key=lambda i: order_key(str(values[i])))] = np.arange(len(values))
    return rank[inverse.reshape(-1)]


def _check_distinct(first: dict[str, tuple[str, int]]) -> None:
    """Refuse labels that print alike; warn about the same number written twice, or case-only twins."""
    groups: dict[str, list[str]] = defaultdict(list)
    numbers: dict[float, list[str]] = defaultdict(list)
    cases: dict[str, list[str]] = defaultdict(list)
    for label in first:
        groups[printed(label)].append(label)
        if _NUMBER.fullmatch(label):
            numbers[float(label)].append(label)
        cases[printed(label).casefold()].append(label)

    def listed(labels: list[str]) -> str:
        return ", ".join(f"{name!r} ({first[name][1]} row(s), first at {first[name][0]})" for name in sorted(labels))

    alike = [g for g in groups.values() if len(g) > 1]
    if alike:
        raise DataError("labels that print alike but differ (invisible or look-alike characters): "
                        + "; ".join(listed(g) for g in alike) + "; fix them in the file so that each class is one text")
    for same in (g for g in numbers.values() if len(g) > 1):
        log.warning("labels %s are the same number written differently: kept as %d classes (a label is the "
                    "text written); write them alike if they are one class", listed(same), len(same))
    for same in (g for g in cases.values() if len(g) > 1 and len({printed(x) for x in g}) > 1):
        log.warning("labels %s differ only in case: kept as %d classes", listed(same), len(same))
