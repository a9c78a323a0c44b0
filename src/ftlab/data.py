"""Data: load the configured source, split it, and write the prepared splits as Parquet.

Prepared data is a directory with ``train/validation/test.parquet`` (the task's canonical
columns: ``text`` always, ``text_pair`` for pairs, ``tokens`` for token tasks, and ``label``
encoded by the task), ``labels.json`` (the task's label names in id order) and ``meta.json`` (a
fingerprint of the data and task config, so a later stage can tell whether the prepared files
still match params.yaml).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from pathlib import Path

import pandas as pd

from ftlab.config import BUILTIN_DEMO, SPLITS, Config, DataConfig
from ftlab.io import atomic_dir
from ftlab.tasks import DataError, Task

log = logging.getLogger(__name__)

READERS = {
    ".csv": lambda p: pd.read_csv(p, encoding="utf-8"),
    ".tsv": lambda p: pd.read_csv(p, sep="\t", quoting=csv.QUOTE_NONE, encoding="utf-8"),
    ".jsonl": lambda p: pd.read_json(p, lines=True, encoding="utf-8"),
    ".json": lambda p: pd.read_json(p, lines=True, encoding="utf-8"),
    ".parquet": pd.read_parquet,
}


def read_table(path: Path, task: Task) -> pd.DataFrame:
    """One file as a DataFrame of the task's canonical columns (``text``, ``label``, ...)."""
    suffix = path.suffix.lower()
    reader = READERS.get(suffix)
    if reader is None and suffix not in task.file_suffixes:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use one of "
                        f"{sorted([*READERS, *task.file_suffixes])}")
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    if suffix in task.file_suffixes:
        df = task.read_file(path)
    else:
        assert reader is not None
        try:
            df = _columns(reader(path), task, str(path))
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not valid UTF-8 (byte {e.start}: {e.reason})") from None
        except (ValueError, pd.errors.ParserError) as e:
            raise DataError(f"{path}: cannot parse as {path.suffix} ({e})") from None
    if df.empty:
        raise DataError(f"{path}: no rows")
    return df


def _columns(df: pd.DataFrame, task: Task, where: str) -> pd.DataFrame:
    """The task's source columns of ``df``, renamed to the canonical names."""
    columns = task.source_columns()
    missing = [c for c in columns.values() if c not in df.columns]
    if missing:
        keys = ", ".join(f"task.{k}_column" if k != "tokens" else "task.text_column" for k in columns)
        raise DataError(f"{where}: missing column(s) {missing}; found {list(df.columns)} (set {keys})")
    return df[list(columns.values())].set_axis(list(columns), axis=1)


def load_source(cfg: DataConfig, task: Task, seed: int) -> dict[str, pd.DataFrame]:
    """The raw splits the source provides (at least ``train``), in the task's canonical columns."""
    source = cfg.source
    if isinstance(source, dict):
        return {s: read_table(Path(p), task) for s, p in source.items()}
    if source == BUILTIN_DEMO:
        from ftlab.demo import generate_demo

        if task.name != "classification":
            raise DataError(f"data.source: {BUILTIN_DEMO} is a classification dataset; task.type is {task.name!r}")
        return {"train": generate_demo(cfg.demo.n_samples, cfg.demo.label_noise, seed)}
    if source.startswith("builtin:"):
        if source.removeprefix("builtin:") in task.builtin_sources:  # e.g. causal_lm's builtin:reverse
            return {"train": task.builtin(source.removeprefix("builtin:"), cfg.demo.n_samples, seed)}
        known = [BUILTIN_DEMO, *(f"builtin:{name}" for name in task.builtin_sources)]
        raise DataError(f"data.source: unknown built-in dataset {source!r} for task {task.name!r}; known: {known}")
    if source.startswith("hub:"):
        return _load_hub(cfg, task, source.removeprefix("hub:"))
    return {"train": read_table(Path(source), task)}


def _load_hub(cfg: DataConfig, task: Task, name: str) -> dict[str, pd.DataFrame]:
    """A Hugging Face hub dataset (needs a network, or a local dataset script/directory)."""
    from datasets import load_dataset

    ds = load_dataset(name, cfg.hub_config)
    out: dict[str, pd.DataFrame] = {}
    for split, hub_name in cfg.hub_splits.items():
        if hub_name in ds:
            out[split] = _columns(ds[hub_name].to_pandas(), task, f"hub:{name}")
    if "train" not in out:
        raise DataError(f"hub:{name}: no split {cfg.hub_splits['train']!r}; found {list(ds)}")
    return out


def _sample(df: pd.DataFrame, n: int | None, seed: int, task: Task) -> pd.DataFrame:
    """A seeded subsample of ``n`` rows, stratified where the task has classes (all rows when ``n`` is None or larger)."""
    from sklearn.model_selection import train_test_split  # 0.8 s: only `prepare` splits

    if n is None or n >= len(df):
        return df
    stratify = task.stratify(df)
    if stratify is not None and n < stratify.nunique():
        stratify = None
    keep, _ = train_test_split(df, train_size=n, random_state=seed, stratify=stratify)
    return keep


def _split_off(df: pd.DataFrame, size: float, seed: int, task: Task) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    return train_test_split(df, test_size=size, random_state=seed, stratify=task.stratify(df))


def split(raw: dict[str, pd.DataFrame], cfg: DataConfig, task: Task, seed: int) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Train/validation/test with the task's encoded labels, and the label names (id order)."""
    for name, df in raw.items():
        task.check_rows(df, name)
    splits = dict(raw)
    if "test" not in splits:
        splits["train"], splits["test"] = _split_off(splits["train"], cfg.test_size, seed, task)
    if "validation" not in splits:
        share = cfg.validation_size / (1 - cfg.test_size) if "test" not in raw else cfg.validation_size
        splits["train"], splits["validation"] = _split_off(splits["train"], share, seed, task)
    limits = {"train": cfg.max_train_samples, "validation": cfg.max_validation_samples, "test": cfg.max_test_samples}
    sampled = {name: _sample(splits[name], limits[name], seed, task) for name in SPLITS}
    for name, df in sampled.items():
        if "text" in df:
            sampled[name] = df.assign(**{c: df[c].astype(str) for c in ("text", "text_pair") if c in df})
    out, names = task.encode(sampled)
    return {name: df.reset_index(drop=True) for name, df in out.items()}, names


def fingerprint(cfg: Config) -> str:
    """Hash of everything the prepared data depends on."""
    blob = json.dumps({"data": cfg.data.model_dump(mode="json"), "task": cfg.task.model_dump(mode="json"),
                       "seed": cfg.seed}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def prepare(cfg: Config, out_dir: Path | None = None) -> Path:
    """Load, split and write the prepared data; the directory appears whole or not at all."""
    out_dir = Path(out_dir or cfg.data.prepared_dir)
    task = cfg.task_type()
    splits, names = split(load_source(cfg.data, task, cfg.seed), cfg.data, task, cfg.seed)
    with atomic_dir(out_dir) as tmp:
        for name, df in splits.items():
            df.to_parquet(tmp / f"{name}.parquet", index=False)
        (tmp / "labels.json").write_text(json.dumps(names, indent=2))
        meta = {"fingerprint": fingerprint(cfg), "rows": {k: len(v) for k, v in splits.items()}}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    log.info("prepared %s in %s", meta["rows"], out_dir)
    return out_dir


def load_prepared(cfg: Config, data_dir: Path | None = None) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """The prepared splits and label names; prepares them first if missing or stale."""
    data_dir = Path(data_dir or cfg.data.prepared_dir)
    meta = data_dir / "meta.json"
    if not meta.is_file() or json.loads(meta.read_text())["fingerprint"] != fingerprint(cfg):
        log.info("prepared data in %s missing or stale: preparing", data_dir)
        prepare(cfg, data_dir)
    splits = {name: pd.read_parquet(data_dir / f"{name}.parquet") for name in SPLITS}
    return splits, json.loads((data_dir / "labels.json").read_text())
