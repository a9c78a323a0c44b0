"""Data: load the configured source, split it, and write the prepared splits as Parquet.

Prepared data is a directory with ``train/validation/test.parquet`` (the task's canonical
columns: ``text`` always, ``text_pair`` for pairs, ``tokens`` for token tasks, ``label`` encoded by
the task, and ``origin``, the source file and line of each row, where known), ``labels.json`` (the
task's label names in id order) and ``meta.json`` (a fingerprint of the data and task config and
of the source files, so a later stage can tell whether the prepared files are still current).
The file readers are in :mod:`ftlab.data.readers`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from ftlab.core.builtins import BUILTIN_DEMO, SPLITS
from ftlab.core.config import DataConfig
from ftlab.core.io import atomic_dir
from ftlab.data.batches import SOURCE_SLICE, Batch, digests as batch_digests, labelled, split_batch, trained_first
from ftlab.data.demo import generate_demo
from ftlab.data.intake import batch_labels, check_batch_label_sets
from ftlab.data.labels import clean_labels, codes, is_blank, order_key
from ftlab.data.readers import CHUNK_ROWS, Table, open_table, read_table
from ftlab.data.splitting import plan
from ftlab.data.streamed import prepare_streamed
from ftlab.learning.config import Config
from ftlab.learning.tasks import DataError, Task
from ftlab.learning.tasks.base import where

__all__ = ["DataError", "fingerprint", "load_prepared", "prepare", "read_table", "split"]

log = logging.getLogger(__name__)
PREPARED_FILES = tuple(f"{s}.parquet" for s in SPLITS)


def load_source(cfg: DataConfig, task: Task, seed: int) -> dict[str, pd.DataFrame]:
    """The raw splits the source provides (at least ``train``), in the task's canonical columns
    and, for files, ``origin``."""
    source = cfg.source
    if isinstance(source, dict):
        return {s: read_table(Path(p), task, cfg.quoting) for s, p in source.items()}
    if source == BUILTIN_DEMO:
        if not task.demo_data:
            raise DataError(f"data.source: {BUILTIN_DEMO} is a classification dataset; task.type is {task.name!r}")
        return {"train": generate_demo(cfg.demo.n_samples, cfg.demo.label_noise, seed)}
    if source.startswith("builtin:"):
        if source.removeprefix("builtin:") in task.builtin_sources:  # e.g. causal_lm's builtin:reverse
            return {"train": task.builtin(source.removeprefix("builtin:"), cfg.demo.n_samples, seed)}
        known = [BUILTIN_DEMO, *(f"builtin:{name}" for name in task.builtin_sources)]
        raise DataError(f"data.source: unknown built-in dataset {source!r} for task {task.name!r}; known: {known}")
    if source.startswith("hub:"):
        return _load_hub(cfg, task, source.removeprefix("hub:"))
    return {"train": read_table(Path(source), task, cfg.quoting)}


def _load_hub(cfg: DataConfig, task: Task, name: str) -> dict[str, pd.DataFrame]:
    """A Hugging Face hub dataset (needs a network, or a local dataset script/directory)."""
    from datasets import load_dataset

    ds = load_dataset(name, cfg.hub_config)
    columns = task.source_columns()
    out: dict[str, pd.DataFrame] = {}
    for split, hub_name in cfg.hub_splits.items():
        if hub_name in ds:
            df = ds[hub_name].to_pandas()
            missing = [c for c in columns.values() if c not in df.columns]
            if missing:
                raise DataError(f"hub:{name}: missing column(s) {missing}; found {list(df.columns)}")
            out[split] = df[list(columns.values())].set_axis(list(columns), axis=1)
    if "train" not in out:
        raise DataError(f"hub:{name}: no split {cfg.hub_splits['train']!r}; found {list(ds)}")
    return out


def _strata(df: pd.DataFrame, task: Task) -> np.ndarray | None:
    """What splits stratify on: for class labels always the class (also when a class has a single
    row: the split is then by largest remainder, which keeps it in train under every seed)."""
    if task.class_labels:
        return codes(df["label"])
    strata = task.stratify(df)
    return None if strata is None else pd.factorize(strata.astype(str), sort=True)[0]


def check_raw(raw: dict[str, pd.DataFrame], task: Task) -> dict[str, pd.DataFrame]:
    """The raw splits with class labels cleaned (see :mod:`ftlab.data.labels`); unusable rows refused."""
    if task.class_labels:
        raw = clean_labels(raw)
    for name, df in raw.items():
        check_blank(df, name)
        task.check_rows(df, name)
    return raw


def split(raw: dict[str, pd.DataFrame], cfg: DataConfig, task: Task, seed: int,
          batches: Sequence[Batch] = ()) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Train/validation/test with the task's encoded labels (and ``origin`` where known), and the label
    names. Which rows, in which order, is decided by :func:`ftlab.data.splitting.plan`. Each labelled
    batch is split in the same proportions and appended, every row tagged with its ``slice``; its
    labels are read as the source's class names (see :func:`ftlab.data.intake.batch_labels`), its
    label sets or tags hold only labels of the source or that its ingest accepted, and its rows with
    a label no train row has are trained on (:func:`ftlab.data.batches.trained_first`)."""
    raw = check_raw(raw, task)
    if batches and task.class_labels:
        batches, _ = batch_labels(batches, sorted({x for df in raw.values() for x in df["label"]}, key=order_key))
    elif batches:  # label sets and tags: a label no ingest accepted is refused, naming its batch
        check_batch_label_sets(raw, batches, task)
    rows = plan({name: len(df) for name, df in raw.items()}, {name: _strata(df, task) for name, df in raw.items()},
                cfg, seed)
    sampled = {name: raw[rows[name][0]].iloc[rows[name][1]] for name in SPLITS}
    if batches:
        sampled = {name: df.assign(slice=SOURCE_SLICE) for name, df in sampled.items()}
        for batch in batches:
            parts = trained_first(split_batch(batch.rows, cfg, _strata(batch.rows, task), seed), sampled["train"], task,
                                  batch.name)
            sampled = {name: pd.concat([sampled[name], parts[name].assign(slice=batch.name)]) for name in SPLITS}
    for name, df in sampled.items():
        sampled[name] = df.assign(**{c: df[c].astype(str) for c in ("text", "text_pair") if c in df})
    encoded, names = task.encode(sampled)
    if task.class_labels:
        encoded, names = _in_label_order(encoded, names)
    out = {}
    for name, df in encoded.items():
        df = df.reset_index(drop=True)
        origin = sampled[name].get("origin")
        if origin is not None and origin.notna().all():
            df["origin"] = origin.to_numpy()
        if batches:
            df["slice"] = sampled[name]["slice"].to_numpy()
        out[name] = df
    return out, names


def check_blank(df: pd.DataFrame, split: str) -> None:
    """Texts that show no visible character (spaces, zero-width characters, ...) are blank."""
    for column in ("text", "text_pair"):
        if column in df:
            blank = df[column].isna() | df[column].map(is_blank).astype(bool)
            if blank.any():
                what = "text(s)" if column == "text" else "text pair(s)"  # blank: no visible character
                raise DataError(f"{split}: {int(blank.sum())} null or blank {what}, e.g. {where(df, blank)}")


def _in_label_order(encoded: dict[str, pd.DataFrame], names: list[str]) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Label ids in number order where labels are numbers (2 before 10), else text order."""
    order = sorted(names, key=order_key)
    new_id = np.array([order.index(n) for n in names])
    return {s: df.assign(label=new_id[df["label"].to_numpy()]) for s, df in encoded.items()}, order


def fingerprint(cfg: Config) -> str:
    """Hash of everything the prepared data depends on: the data and task params, the seed and the
    bytes of every source file (a file edited in place makes the prepared data stale too)."""
    source = cfg.data.source
    files = [Path(p) for p in source.values()] if isinstance(source, dict) else (
        [] if source.startswith(("builtin:", "hub:")) else [Path(source)])
    digests = {str(f): _sha256(f) if f.is_file() else None for f in files}
    data = cfg.data.model_dump(mode="json", exclude={"batches_dir"})  # where batches are kept is not what they hold
    blob = json.dumps({"data": data, "task": cfg.task.model_dump(mode="json"), "seed": cfg.seed, "files": digests,
                       **({"batches": batches} if (batches := batch_digests(cfg.data)) else {})}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()  # in blocks: a large file is never held


def _tables(cfg: DataConfig, task: Task) -> dict[str, Table] | None:
    """The source's files opened for a streamed prepare (class labels from CSV, TSV or JSON Lines
    files), or None for the other sources and tasks, which are read whole."""
    source = cfg.source
    if not task.class_labels or (isinstance(source, str) and source.startswith(("builtin:", "hub:"))):
        return None
    files = source if isinstance(source, dict) else {"train": source}
    tables = {split: open_table(Path(p), task, cfg.quoting) for split, p in files.items()}
    return tables if all(t.streamed for t in tables.values()) else None


@contextmanager
def _stoppable() -> Iterator[None]:
    """SIGTERM stops a prepare as Ctrl-C does (KeyboardInterrupt between two rows): the half-written
    directory is removed, earlier prepared data is left as it was."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"prepare stopped by {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def prepare(cfg: Config, out_dir: Path | None = None, chunk_rows: int = CHUNK_ROWS) -> Path:
    """Load, split and write the prepared data; the directory appears whole or not at all. A
    classification source of CSV/TSV/JSONL files is read ``chunk_rows`` rows at a time (ftlab.data.streamed)."""
    out_dir = Path(out_dir or cfg.data.prepared_dir)
    task = cfg.task_type()
    with _stoppable():
        batches = labelled(cfg.data)
        tables = None if batches else _tables(cfg.data, task)  # a source with batches is read whole
        splits: dict[str, pd.DataFrame] = {}
        if tables is None:
            splits, names = split(load_source(cfg.data, task, cfg.seed), cfg.data, task, cfg.seed, batches)
        with atomic_dir(out_dir) as tmp:
            if tables is not None:
                rows, names = prepare_streamed(tables, cfg.data, task, cfg.seed, tmp, chunk_rows)
            for name, df in splits.items():
                df.to_parquet(tmp / f"{name}.parquet", index=False)
            (tmp / "labels.json").write_text(json.dumps(names, indent=2))
            meta = {"fingerprint": fingerprint(cfg), "rows": rows if tables is not None else {k: len(v) for k, v in splits.items()}}
            if batches:  # rows per slice (the source and each labelled batch) in each split
                meta["slices"] = {k: v["slice"].value_counts(sort=False).to_dict() for k, v in splits.items()}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    log.info("prepared %s in %s", meta["rows"], out_dir)
    return out_dir


def is_current(cfg: Config, data_dir: Path) -> bool:
    """Whether ``data_dir`` holds prepared data, complete, made from the current params and files."""
    meta = Path(data_dir) / "meta.json"
    if not meta.is_file() or not all((Path(data_dir) / f).is_file() for f in (*PREPARED_FILES, "labels.json")):
        return False
    try:
        return json.loads(meta.read_text()).get("fingerprint") == fingerprint(cfg)
    except (ValueError, AttributeError):
        return False


def ensure_prepared(cfg: Config, data_dir: Path | None = None) -> Path:
    """``data_dir`` (default data.prepared_dir), prepared first if missing, incomplete or stale."""
    data_dir = Path(data_dir or cfg.data.prepared_dir)
    if not is_current(cfg, data_dir):
        log.info("prepared data in %s missing or stale: preparing", data_dir)
        prepare(cfg, data_dir)
    return data_dir


def load_prepared(cfg: Config, data_dir: Path | None = None) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """The prepared splits and label names; prepares them first if missing or stale."""
    data_dir = ensure_prepared(cfg, data_dir)
    splits = {name: pd.read_parquet(data_dir / f"{name}.parquet") for name in SPLITS}
    return splits, json.loads((data_dir / "labels.json").read_text())
