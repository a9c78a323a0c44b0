"""What a batch's rows are to the data already trained on: their labels as its class names, and the
rows it already holds.

Ingest and prepare both read a batch's labels here, as ``ftlab monitor`` reads labels: cleaned as a
training file's are (:mod:`ftlab.data.labels`), then the known class names as they are, or the ids
0..k-1 of those names. A label that is neither is a new class, which only an explicit answer
(``ftlab ingest --new-labels``, recorded in ``batch.json``) lets in. A duplicate row is one whose
content, normalised (Unicode NFC, line ends, surrounding whitespace), equals a row of the source or
an earlier batch: re-saving a file with other line ends or another encoding changes its bytes, not
its rows.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ftlab.data.batches import Batch
from ftlab.data.labels import LabelCleaner, as_known, is_number, order_key, printed
from ftlab.learning.tasks import DataError, Task
from ftlab.learning.tasks.base import where as at

KEY_SEPARATOR = "\x1f"  # between the columns of a row's key (a unit separator no text holds)


def cleaned_labels(df: pd.DataFrame, where: str) -> pd.Series:
    """The label column cleaned as a training file's is, without warnings (ingest warned when it read it)."""
    origins = df["origin"] if "origin" in df and df["origin"].notna().all() else None
    return pd.Series(LabelCleaner().clean(df["label"], origins, where), index=df.index, dtype=object)


def read_labels(labels: Sequence[str], names: list[str], where: str, accepted: Iterable[str] = (),
                how_to_accept: str = "") -> tuple[list[str], dict[str, str], list[str]]:
    """``labels`` as the class ``names`` (see :func:`ftlab.data.labels.as_known`): the labels, the id map
    applied and the new classes, refused naming them unless every one is ``accepted``."""
    out, ids, new = as_known(list(labels), names)
    refused = [label for label in new if label not in set(accepted)]
    if refused:
        numbers = "" if any(map(is_number, names)) else f" nor their ids 0..{len(names) - 1}"
        raise DataError(f"{where}: label(s) {refused[:10]} are neither the classes trained on {names[:20]}{numbers}"
                        f"{_resembling(refused, names)}: map them to those labels, {how_to_accept}")
    return out, ids, new


def _resembling(new: list[str], names: list[str]) -> str:
    """A hint for new labels that differ from a known one only in case or look-alike characters."""
    folded = {printed(n).casefold(): n for n in names}
    twins = [f"{label!r} is {folded[key]!r} in another case or characters" for label in new
             if (key := printed(label).casefold()) in folded]
    return f" ({'; '.join(twins)})" if twins else ""


def batch_labels(batches: Sequence[Batch], names: list[str]) -> tuple[list[Batch], list[str]]:
    """Prepare's reading of the labelled batches after a source whose classes are ``names``: each
    batch's labels cleaned and read as class names (ids of a batch ingested raw become names), a
    class new to the source and the earlier batches refused unless its ``batch.json`` accepted it.
    Returns the batches and every class name, in label order."""
    known, out = list(names), []
    for batch in batches:
        where = f"batch {batch.name!r} ({batch.path})"
        order = sorted(known, key=order_key)
        labels, _, new = read_labels(cleaned_labels(batch.rows, where).tolist(), order, where,
                                     batch.info.get("new_labels", []),
                                     "or remove the batch directory and ingest its file again with --new-labels")
        known += new
        out.append(batch._replace(rows=batch.rows.assign(label=labels)))
    return out, sorted(known, key=order_key)


def new_labels(df: pd.DataFrame, sets: Sequence[Sequence[str]], names: Iterable[str], where: str,
               accepted: Iterable[str] = (), how_to_accept: str = "") -> list[str]:
    """The labels of ``sets`` (each row's label set or tags, :meth:`Task.label_sets` of ``df``) that are
    not the ``names`` trained on, refused naming them and their rows unless every one is ``accepted``."""
    known = sorted(set(names))
    new = sorted({n for row in sets for n in row} - set(known))
    refused = [n for n in new if n not in set(accepted)]
    if refused:
        rows = pd.Series([not set(row).isdisjoint(refused) for row in sets], index=df.index)
        raise DataError(f"{where}: label(s) {refused[:10]} are not among the labels trained on {known[:40]}"
                        f"{_resembling(refused, known)}, e.g. at {at(df, rows)}: map them to those labels, {how_to_accept}")
    return new


def batch_label_sets(batches: Sequence[Batch], task: Task, names: Iterable[str]) -> set[str]:
    """Prepare's reading of labelled batches of label sets or tags after a source whose labels are
    ``names``: a label new to the source and the earlier batches is refused unless its batch's
    ``batch.json`` accepted it (``--new-labels``). Returns every label."""
    known = set(names)
    for batch in batches:
        where = f"batch {batch.name!r} ({batch.path})"
        known |= set(new_labels(batch.rows, task.label_sets(batch.rows, where) or [], known, where,
                                batch.info.get("new_labels", []),
                                "or remove the batch directory and ingest its file again with --new-labels"))
    return known


def check_batch_label_sets(raw: dict[str, pd.DataFrame], batches: Sequence[Batch], task: Task) -> None:
    """Refuse labelled batches of label sets or tags that hold a label the source's splits and earlier
    batches do not, unless ingest accepted it; nothing for other tasks."""
    names: set[str] = set()
    for split, df in raw.items():
        sets = task.label_sets(df, split)
        if sets is None:
            return
        names |= {n for row in sets for n in row}
    batch_label_sets(batches, task, names)


def _text(value: Any) -> str:
    """One value as compared between rows: NFC, line ends as \\n, surrounding whitespace removed;
    a list (tokens, tags) element by element."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + KEY_SEPARATOR.join(_text(v) for v in value) + "]"
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    text = unicodedata.normalize("NFC", str(value))
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def row_keys(df: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """Each row's normalised content in ``columns`` as one string (what makes two rows the same)."""
    if df.empty:
        return pd.Series([], dtype=object)
    parts = [df[c].map(_text) for c in columns]
    return pd.Series([KEY_SEPARATOR.join(row) for row in zip(*parts, strict=True)], index=df.index, dtype=object)


def target_values(df: pd.DataFrame, task: Task, where: str) -> pd.DataFrame:
    """``df`` with its target as ingest compares and keeps it: a label list or tags as a list of names
    (``"joy,love"`` in a TSV file and ``["joy", "love"]`` in JSON are one label list), a score as a number
    (``3.800`` and ``3.8``; JSON may mix both, which one Parquet column cannot hold); other targets and
    values that are not numbers as they are."""
    if task.target != "label" or task.class_labels or "label" not in df:
        return df
    sets = task.label_sets(df, where)
    if sets is not None:
        return df.assign(label=[list(row) for row in sets])
    try:
        return df.assign(label=pd.to_numeric(df["label"]).astype(float))
    except (ValueError, TypeError):  # not all numbers: the task's checks name them
        return df


def repeated(df: pd.DataFrame, columns: Sequence[str], earlier: dict[str, pd.DataFrame]) -> tuple[pd.Series, dict[str, int]]:
    """Which rows of ``df`` repeat a row of an ``earlier`` frame (slice name -> rows) in ``columns``,
    and how many repeat each slice's (a row counted at the first slice it repeats)."""
    keys = row_keys(df, columns)
    found = pd.Series(False, index=df.index)
    counts: dict[str, int] = {}
    for name, rows in earlier.items():
        hit = keys.isin(set(row_keys(rows, columns))) & ~found
        if hit.any():
            counts[name] = int(hit.sum())
            found |= hit
    return found, counts
