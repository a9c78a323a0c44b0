"""``ftlab ingest FILE``: keep a batch of new rows under ``data.batches_dir`` (see :mod:`ftlab.data.batches`).

Every task's rows: a class, a score, a label list or a sentence's tags (``task.label_column``), or a
causal LM's response, beside one text, a pair or a prompt. The file is read with the training
readers (CoNLL files too) and refused, naming the file and line, for every reason a training file
would be. What prepare would otherwise take for another dataset is refused too, unless the user
answered it ahead (:class:`Answers`, the CLI's flags): labels that are not the classes, label-list
labels or tags trained on (class ids 0..k-1 are read as their names, as ``ftlab monitor`` reads
them), rows without a target in a labelled file, rows the source or an earlier batch holds. Each
answer used is said in the returned ``notes`` and kept in ``batch.json``. The batch directory
appears whole or not at all, one ingest at a time, and nothing else changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from ftlab.core.config import DataConfig
from ftlab.core.io import atomic_dir
from ftlab.data.batches import NAME, SOURCE_SLICE, batch_dirs, locked, read_batches, read_info, remove_stale
from ftlab.data.intake import (
    batch_label_sets,
    batch_labels,
    cleaned_labels,
    new_labels,
    read_labels,
    repeated,
    target_values,
)
from ftlab.data.labels import clean_labels, order_key
from ftlab.data.prepare import check_blank, load_source
from ftlab.data.readers import check_regular, read_table
from ftlab.learning.tasks import DataError, Task
from ftlab.learning.tasks.base import where

log = logging.getLogger(__name__)
NAME_LIMIT = 100  # characters of --name: the directory, its temporary sibling and its .dvc file stay under NAME_MAX


@dataclass(frozen=True)
class Answers:
    """What the user answered ahead to the questions a batch can raise (the CLI's flags); each default
    refuses the batch with the question."""

    new_labels: bool = False  # --new-labels: labels that are not the classes trained on become classes
    duplicates: str = "refuse"  # --duplicates refuse|drop|keep: rows already in the source or an earlier batch
    unlabelled_rows: str = "refuse"  # --unlabelled-rows refuse|drop: rows without a label in a labelled file

    def __post_init__(self) -> None:
        if self.duplicates not in ("refuse", "drop", "keep"):
            raise DataError(f"--duplicates must be refuse, drop or keep, not {self.duplicates!r}")
        if self.unlabelled_rows not in ("refuse", "drop"):
            raise DataError(f"--unlabelled-rows must be refuse or drop, not {self.unlabelled_rows!r}")


class TextsOnly:
    """The task, reading only its inputs (no target): an unlabelled batch is read with the training readers."""

    def __init__(self, task: Task):
        self.task = task

    def __getattr__(self, name: str) -> Any:
        return getattr(self.task, name)

    def source_columns(self) -> dict[str, str]:
        return {k: v for k, v in self.task.source_columns().items() if k != self.task.target}


def target_column(task: Task) -> str | None:
    """The file's column of the task's target (``task.label_column``, causal LMs' ``task.response_column``);
    None where every row carries its target (chat messages)."""
    return None if task.target is None else task.source_columns()[task.target]


def batch_name(name: str | None, path: Path) -> str:
    """The batch's name: ``--name`` or the file's name, checked before anything is read."""
    if name is None:
        return (re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-.") or "batch")[:NAME_LIMIT]
    if len(name) > NAME_LIMIT:
        raise DataError(f"--name: {len(name)} characters; a batch name has at most {NAME_LIMIT}")
    if name == SOURCE_SLICE:
        raise DataError(f"--name {name!r} is the slice of data.source's rows in reports; choose another")
    if not NAME.fullmatch(name):
        raise DataError(f"--name {name!r}: use letters, digits, '.', '_' and '-', starting with a letter or digit")
    return name


def _has_label(path: Path, task: Task) -> bool:
    """Whether the file has the target's column: in its header or schema, or in ANY record of a JSON
    file (records may differ; a first record without a label says nothing of the others)."""
    column, suffix = target_column(task), path.suffix.lower()
    try:
        if suffix in task.file_suffixes or column is None:
            return True
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return column in pq.read_schema(path).names
        if suffix in (".csv", ".tsv"):
            return column in pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", nrows=0, encoding="utf-8-sig").columns
        with open(path, encoding="utf-8-sig") as f:
            if suffix == ".json":
                return any(isinstance(item, dict) and column in item for item in json.load(f))
            return any(isinstance(item := json.loads(line), dict) and column in item for line in f if line.strip())
    except (OSError, ValueError, TypeError, UnicodeDecodeError):
        return False  # the reader names what is wrong with the file, with its line
    return False


def read_batch(path: Path, task: Task, quoting: str = "auto", answers: Answers = Answers()
               ) -> tuple[pd.DataFrame, bool, dict]:
    """The batch's rows in the task's columns, whether it is labelled, and what ``answers`` did to it
    (for ``batch.json``); refused, with the file and line, for the reasons a training file is."""
    check_regular(path)  # before any read: a FIFO would block it
    if not _has_label(path, task):
        df = read_table(path, TextsOnly(task), quoting)  # type: ignore[arg-type]
        check_blank(df, str(path))
        return df, False, {}
    df = read_table(path, task, quoting, optional=tuple(filter(None, [target_column(task)])))
    if task.class_labels:
        df = clean_labels({str(path): df})[str(path)]
    df, done = _unlabelled(df, path, task, answers)
    check_blank(df, str(path))
    task.check_rows(df, str(path))
    return target_values(df, task, str(path)), True, done


def _unlabelled(df: pd.DataFrame, path: Path, task: Task, answers: Answers) -> tuple[pd.DataFrame, dict]:
    """A labelled file's rows without a target: refused, naming them, unless ``--unlabelled-rows drop``."""
    missing = task.unlabelled(df)
    n = int(missing.sum())
    if not n:
        return df, {}
    what = f"{n} of {len(df)} row(s) have no label (column {target_column(task)!r}), e.g. {where(df, missing)}"
    if n == len(df):
        raise DataError(f"{path}: {what}: label them, or leave out the label column to keep them unlabelled (for monitoring)")
    if answers.unlabelled_rows != "drop":
        raise DataError(f"{path}: {what}: label them, or pass --unlabelled-rows drop to ingest the {len(df) - n} labelled row(s) only")
    note = f"{what}: dropped (--unlabelled-rows drop)"
    return df[~missing], {"unlabelled_rows": {"rows": n, "action": "dropped"}, "notes": [note]}


def _digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def ingested(path: Path, cfg: DataConfig) -> Path | None:
    """The batch that already holds this file (same SHA-256), if any."""
    sha = _digest(Path(path))
    return next((b for b in batch_dirs(cfg.batches_dir) if read_info(b)["sha256"] == sha), None)


def _earlier(cfg: DataConfig, task: Task, seed: int, labelled: bool) -> tuple[list[str], dict[str, pd.DataFrame]]:
    """The classes trained on (label order; for label sets and tags, every label of the source and the
    labelled batches) and the rows a new batch must not repeat (slice -> rows): for a labelled batch,
    data.source's and every labelled batch's; else the unlabelled batches'."""
    if not labelled:
        return [], {b.name: b.rows for b in read_batches(cfg, labelled=False)}
    try:
        source = pd.concat(load_source(cfg, task, seed).values(), ignore_index=True)
    except DataError as e:
        raise DataError(f"data.source, read to check the batch against it: {e}") from None
    batches = read_batches(cfg, labelled=True)
    names: list[str] = []
    if task.class_labels:
        source = source.assign(label=cleaned_labels(source, "data.source"))
        batches, names = batch_labels(batches, sorted(set(source["label"]), key=order_key))
    elif (sets := task.label_sets(source, "data.source")) is not None:
        names = sorted(batch_label_sets(batches, task, {n for row in sets for n in row}))
    return names, {"data.source": source, **{b.name: b.rows for b in batches}}


def _check_labels(df: pd.DataFrame, path: Path, names: list[str], answers: Answers) -> tuple[pd.DataFrame, dict]:
    """The batch's labels as the classes trained on (ids read as names); new classes only with --new-labels."""
    accept = "or pass --new-labels to add them as new classes" if not answers.new_labels else ""
    labels, ids, new = read_labels(df["label"].tolist(), names, str(path), df["label"] if answers.new_labels else (), accept)
    done: dict = {"notes": []}
    if ids:
        done["label_ids"] = ids
        done["notes"].append(f"labels read as label ids: {', '.join(f'{i} = {n}' for i, n in ids.items())}")
    if new:
        done["new_labels"] = new
        done["notes"].append(f"new class(es) {new} added (--new-labels): the next prepare trains on "
                             f"{len(names) + len(new)} classes, not {len(names)}")
    return df.assign(label=labels), done


def _check_label_sets(df: pd.DataFrame, path: Path, task: Task, names: list[str], answers: Answers) -> dict:
    """A batch of label sets or tags: labels never trained on only with --new-labels (then recorded)."""
    sets = task.label_sets(df, str(path))
    if sets is None:  # a score, a response: no classes
        return {}
    accepted = {n for row in sets for n in row} if answers.new_labels else set()
    new = new_labels(df, sets, names, str(path), accepted, "or pass --new-labels to add them as new labels")
    if not new:
        return {}
    return {"new_labels": new, "notes": [f"new label(s) {new} added (--new-labels): the next prepare trains on "
                                         f"{len(names) + len(new)} labels, not {len(names)}"]}


def _check_repeats(df: pd.DataFrame, path: Path, task: Task, labelled: bool, earlier: dict[str, pd.DataFrame],
                   answers: Answers) -> tuple[pd.DataFrame, dict]:
    """Rows that repeat earlier ones (normalised content): refused unless --duplicates drop or keep."""
    columns = [c for c in task.source_columns() if c != task.target or labelled]
    compared = {name: target_values(rows, task, name) for name, rows in earlier.items()} if labelled else earlier
    found, counts = repeated(df, columns, compared)
    n = int(found.sum())
    if not n:
        return df, {}
    what = (f"{n} of {len(df)} row(s) repeat rows of {', '.join(f'{name} ({k})' for name, k in counts.items())}, "
            f"e.g. {where(df, found)}")
    if answers.duplicates == "refuse":
        raise DataError(f"{path}: {what} (the same rows saved again count twice): pass --duplicates drop to ingest "
                        "the new rows only, or --duplicates keep to count them again")
    if answers.duplicates == "drop" and n == len(df):
        raise DataError(f"{path}: {what}: no new row to ingest")
    action = "dropped" if answers.duplicates == "drop" else "kept"
    done = {"duplicates": {"rows": n, "of": counts, "action": action},
            "notes": [f"{what}: {action} (--duplicates {answers.duplicates})"]}
    return (df[~found] if action == "dropped" else df), done


def ingest(path: Path, task: Task, cfg: DataConfig, seed: int, name: str | None = None,
           answers: Answers = Answers()) -> dict:
    """Keep the batch ``path`` under ``cfg.batches_dir``; returns its ``batch.json`` and ``dir``. The same
    file twice is refused (it would count its rows twice), and so is a name already taken; ``seed``:
    the data seed (a built-in source's rows depend on it)."""
    path = Path(path)
    name = batch_name(name, path)
    df, labelled, done = read_batch(path, task, cfg.quoting, answers)
    with locked(cfg.batches_dir):  # numbering, the checks against earlier batches and the rename: one at a time
        remove_stale(cfg.batches_dir)
        if (known := ingested(path, cfg)) is not None:
            raise DataError(f"{path}: already ingested as {known} (same SHA-256): nothing to add")
        existing = batch_dirs(cfg.batches_dir)
        if any(read_info(b)["name"] == name for b in existing):
            raise DataError(f"--name {name!r}: a batch of that name exists in {cfg.batches_dir}; choose another")
        names, earlier = _earlier(cfg, task, seed, labelled)
        steps = [done]
        if labelled and task.class_labels:
            df, step = _check_labels(df, path, names, answers)
            steps.append(step)
        elif labelled:
            steps.append(_check_label_sets(df, path, task, names, answers))
        df, step = _check_repeats(df, path, task, labelled, earlier, answers)
        steps.append(step)
        number = 1 + max((int(b.name.split("-", 1)[0]) for b in existing), default=0)
        info = {"name": name, "number": number, "source": str(path), "sha256": _digest(path), "rows": len(df),
                "labelled": labelled, "ingested_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                **{k: v for step in steps for k, v in step.items() if k != "notes"},
                "notes": [note for step in steps for note in step.get("notes", [])]}
        out = cfg.batches_dir / f"{number:04d}-{name}"
        with atomic_dir(out) as tmp:
            df.to_parquet(tmp / "rows.parquet", index=False)
            (tmp / "batch.json").write_text(json.dumps(info, indent=2) + "\n")
    for note in info["notes"]:
        log.info("%s: %s", path, note)
    log.info("ingested %d %s rows from %s as %s", len(df), "labelled" if labelled else "unlabelled", path, out)
    return {**info, "dir": str(out)}
