"""Reading a batch for ``ftlab monitor``: the input's columns, a bounded uniform sample of its rows, and
its labels as the model's task encodes them, each refusal naming the column, the values and where
they are (file and line) before the model loads."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ftlab.data.readers import SUFFIXES as READERS
from ftlab.learning.tasks import DataError, Task
from ftlab.serving.intake import CHUNK_ROWS, Sample, read_chunks, sample

if TYPE_CHECKING:
    from ftlab.core.config import MonitorConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputColumns:
    """How to read the new data: its text, second text (a pair model's) and label columns (None: the
    model's) and whether a CSV/TSV file has a header line (without one, columns are numbered 1, 2, ...)."""

    text: str | None = None
    label: str | None = None
    header: bool = True
    pair: str | None = None


def read_input(path: Path, cfg: MonitorConfig, header: bool = True, text_column: str = "text",
               label_column: str = "label", sampler: Callable[..., Sample] = sample) -> tuple[Sample, list[Path]] | None:
    """A file, or every supported file in a directory (sorted by name): a uniform sample of at most
    ``monitor.max_rows`` of its rows (:func:`ftlab.serving.intake.sample`: memory stays bounded
    whatever the size), and the files; None when there is nothing to monitor yet: the directory does
    not exist, or holds no rows."""
    path = Path(path)
    if not path.exists() and not path.is_symlink() and path.suffix.lower() not in READERS:
        return None  # the incoming directory before any data arrived
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in READERS) if path.is_dir() else [path]
    found = sampler(files, cfg.max_rows, header, text_column, label_column)
    if found.read == 0:
        return None
    if found.read > len(found.frame):
        log.warning("monitor: %s holds %d rows; judging a uniform random sample of %d (monitor.max_rows)",
                    path, found.read, len(found.frame))
    return found, files


def _as_label(value: Any) -> str:
    """A label as the user wrote it: 1.0 read from a float column is 1."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def label_names(values: pd.Series, names: list[str], column: str, where: str) -> list[str]:
    """The labels as the model's label names: names as they are, or label ids 0..K-1 (how the
    prepared data stores them) when no name is itself a number. Anything else is refused, naming
    the column and the values, before the model is loaded."""
    missing = values.index[values.isna()]
    if len(missing):
        raise DataError(f"{where}: column {column!r} has {len(missing)} row(s) with no label (rows "
                        f"{', '.join(map(str, missing[:5]))}): label every row, or remove the column to monitor drift alone")
    text = [_as_label(v) for v in values]
    found = set(text)
    if found <= set(names):
        return text
    by_id = {str(i): name for i, name in enumerate(names)}
    numeric_names = any(n.lstrip("-").isdigit() for n in names)
    if not numeric_names and found <= set(by_id):
        log.info("%s: column %r holds label ids; read as %s", where, column,
                 ", ".join(f"{i} = {n}" for i, n in by_id.items()))
        return [by_id[t] for t in text]
    unknown = sorted(found - set(names) - (set() if numeric_names else set(by_id)))
    ids = "" if numeric_names else f" nor their ids 0..{len(names) - 1}"
    raise DataError(f"{where}: column {column!r} has label(s) {unknown[:5]} that are neither the model's labels "
                    f"{names}{ids}: map them to the model's labels, name another column with --label-column, "
                    "or monitor a file without labels (drift only)")


def sample_rows(files: list[Path], max_rows: int, header: bool, text: str, label: str) -> Sample:
    """A uniform random sample of at most ``max_rows`` rows (the rows with the smallest of a seeded
    random key each: memory holds the sample and one chunk), in input order; no column is checked
    here (an NER batch's words are lists, which :func:`ftlab.serving.intake.sample` refuses as texts)."""
    rng, kept, read = np.random.default_rng(0), pd.DataFrame(), 0
    for path in files:
        for chunk in read_chunks(path, CHUNK_ROWS, header, text, label):
            at = pd.RangeIndex(read, read + len(chunk.frame))  # row numbers across files: input order
            frame = chunk.frame.set_axis(at).assign(_key=rng.random(len(chunk.frame)), _origin=chunk.origins)
            kept = pd.concat([kept, frame]).nsmallest(max_rows, "_key") if len(kept) else frame.nsmallest(max_rows, "_key")
            read += len(chunk.frame)
    kept = kept.sort_index() if len(kept) else kept.assign(_origin=[])
    return Sample(kept.drop(columns=["_key", "_origin"], errors="ignore"), list(kept["_origin"]), read)


def _places(sample: Sample, bad: np.ndarray) -> str:
    return ", ".join(sample.origins[i] for i in np.flatnonzero(bad)[:5])


def scores_of(sample: Sample, column: str) -> np.ndarray:
    """A regressor's labels: finite numbers, or an error naming the column, values and lines."""
    values = sample.frame[column]
    found = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(found)
    if bad.any():
        shown = [values.iloc[i] for i in np.flatnonzero(bad)[:5]]
        raise DataError(f"column {column!r} holds {int(bad.sum())} score(s) that are not finite numbers {shown} at "
                        f"{_places(sample, bad)}: a regression model's labels are scores; fix them, name another "
                        "column with --label-column, or monitor a file without labels (drift only)")
    return found.astype(np.float32)


def label_sets_of(sample: Sample, column: str, task: Task, names: list[str]) -> list[list[int]]:
    """A multi-label tagger's labels (lists, or strings split as training splits them) as label ids."""
    from ftlab.learning.tasks.multilabel import _label_sets

    sets = _label_sets(sample.frame[column], task.opts.label_separator, f"column {column!r}")
    ids = {n: i for i, n in enumerate(names)}
    unknown = np.array([bool(set(row) - set(ids)) for row in sets])
    if unknown.any():
        found = sorted({n for row in sets for n in row} - set(ids))
        raise DataError(f"column {column!r} has label(s) {found[:5]} that the model does not know ({names[:10]}...) at "
                        f"{_places(sample, unknown)}: map them to the model's labels, or monitor without labels")
    return [sorted({ids[n] for n in row}) for row in sets]


def tags_of(sample: Sample, words: list[list[str]], column: str, names: list[str]) -> list[list[int]]:
    """An NER batch's tags (one per word, as the training files hold them) as tag ids."""
    ids, out = {n: i for i, n in enumerate(names)}, []
    for i, (tags, row) in enumerate(zip(sample.frame[column], words, strict=True)):
        if not isinstance(tags, (list, tuple, np.ndarray)) or len(tags) != len(row):
            raise DataError(f"{sample.origins[i]}: column {column!r} must be a list of one tag per word "
                            f"({len(row)} words), got {str(tags)[:60]!r}")
        unknown = sorted({str(t) for t in tags} - set(ids))
        if unknown:
            raise DataError(f"{sample.origins[i]}: column {column!r} has tag(s) {unknown[:5]} that the model does not "
                            f"know ({names}): map them to its tags, or monitor raw texts without labels")
        out.append([ids[str(t)] for t in tags])
    return out


def words_of(sample: Sample, column: str) -> list[list[str]]:
    """An NER batch's words: a list column of non-empty words per row, named by line when not."""
    out = []
    for i, value in enumerate(sample.frame[column] if column in sample.frame else [None] * len(sample.frame)):
        if not isinstance(value, (list, tuple, np.ndarray)) or not len(value):
            raise DataError(f"{sample.origins[i]}: column {column!r} must be a non-empty list of words (the labelled "
                            f"rows' words, as the training files hold them), got {str(value)[:60]!r}")
        out.append([str(w) for w in value])
    return out


