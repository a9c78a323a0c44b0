"""Data: load the configured source, split it, and write the prepared splits as Parquet.

Prepared data is a directory with ``train/validation/test.parquet`` (columns ``text``, ``label``
as an integer id), ``labels.json`` (id → name) and ``meta.json`` (a fingerprint of the data
config, so a later stage can tell whether the prepared files still match params.yaml).
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

log = logging.getLogger(__name__)

READERS = {
    ".csv": lambda p: pd.read_csv(p, encoding="utf-8"),
    ".tsv": lambda p: pd.read_csv(p, sep="\t", quoting=csv.QUOTE_NONE, encoding="utf-8"),
    ".jsonl": lambda p: pd.read_json(p, lines=True, encoding="utf-8"),
    ".json": lambda p: pd.read_json(p, lines=True, encoding="utf-8"),
    ".parquet": pd.read_parquet,
}


class DataError(ValueError):
    """Input data that cannot be used; the message names the file, column or rows at fault."""


def read_table(path: Path, text_column: str, label_column: str) -> pd.DataFrame:
    """One file as a DataFrame with columns ``text`` and ``label`` (names as in the source)."""
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use one of {sorted(READERS)}")
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    try:
        df = reader(path)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 (byte {e.start}: {e.reason})") from None
    except (ValueError, pd.errors.ParserError) as e:
        raise DataError(f"{path}: cannot parse as {path.suffix} ({e})") from None
    missing = [c for c in (text_column, label_column) if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; found {list(df.columns)} "
            "(set data.text_column / data.label_column)"
        )
    if df.empty:
        raise DataError(f"{path}: no rows")
    return df[[text_column, label_column]].set_axis(["text", "label"], axis=1)


def load_source(cfg: DataConfig, seed: int) -> dict[str, pd.DataFrame]:
    """The raw splits the source provides (at least ``train``), columns ``text`` and ``label``."""
    source = cfg.source
    if isinstance(source, dict):
        return {s: read_table(Path(p), cfg.text_column, cfg.label_column) for s, p in source.items()}
    if source == BUILTIN_DEMO:
        from ftlab.demo import generate_demo

        return {"train": generate_demo(cfg.demo.n_samples, cfg.demo.label_noise, seed)}
    if source.startswith("builtin:"):
        raise DataError(f"data.source: unknown built-in dataset {source!r}; known: {BUILTIN_DEMO!r}")
    if source.startswith("hub:"):
        return _load_hub(cfg, source.removeprefix("hub:"))
    return {"train": read_table(Path(source), cfg.text_column, cfg.label_column)}


def _load_hub(cfg: DataConfig, name: str) -> dict[str, pd.DataFrame]:
    """A Hugging Face hub dataset (needs a network, or a local dataset script/directory)."""
    from datasets import load_dataset

    ds = load_dataset(name, cfg.hub_config)
    out: dict[str, pd.DataFrame] = {}
    for split, hub_name in cfg.hub_splits.items():
        if hub_name in ds:
            df = ds[hub_name].to_pandas()
            missing = [c for c in (cfg.text_column, cfg.label_column) if c not in df.columns]
            if missing:
                raise DataError(f"hub:{name}: missing column(s) {missing}; found {list(df.columns)}")
            out[split] = df[[cfg.text_column, cfg.label_column]].set_axis(["text", "label"], axis=1)
    if "train" not in out:
        raise DataError(f"hub:{name}: no split {cfg.hub_splits['train']!r}; found {list(ds)}")
    return out


def _check(df: pd.DataFrame, split: str) -> None:
    bad = df.index[df["text"].isna() | (df["text"].astype(str).str.strip() == "")]
    if len(bad):
        raise DataError(f"{split}: {len(bad)} null or blank text(s), e.g. rows {list(bad[:5])}")
    if df["label"].isna().any():
        rows = list(df.index[df["label"].isna()][:5])
        raise DataError(f"{split}: null label(s), e.g. rows {rows}")


def _sample(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """A stratified, seeded subsample of ``n`` rows (all rows when ``n`` is None or larger)."""
    from sklearn.model_selection import train_test_split  # 0.8 s: only `prepare` splits

    if n is None or n >= len(df):
        return df
    counts = df["label"].value_counts()
    stratify = df["label"] if counts.min() >= 2 and n >= len(counts) else None
    keep, _ = train_test_split(df, train_size=n, random_state=seed, stratify=stratify)
    return keep


def _split_off(df: pd.DataFrame, size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    counts = df["label"].value_counts()
    stratify = df["label"] if counts.min() >= 2 else None
    return train_test_split(df, test_size=size, random_state=seed, stratify=stratify)


def split(raw: dict[str, pd.DataFrame], cfg: DataConfig, seed: int) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Train/validation/test with integer labels, and the label names (id order)."""
    for name, df in raw.items():
        _check(df, name)
    splits = dict(raw)
    if "test" not in splits:
        splits["train"], splits["test"] = _split_off(splits["train"], cfg.test_size, seed)
    if "validation" not in splits:
        share = cfg.validation_size / (1 - cfg.test_size) if "test" not in raw else cfg.validation_size
        splits["train"], splits["validation"] = _split_off(splits["train"], share, seed)

    values = pd.unique(splits["train"]["label"])
    if len(values) < 2:
        raise DataError(f"train: a single class ({values[0]!r}); classification needs at least 2")
    names = sorted(str(v) for v in values) if not _numeric(values) else [str(v) for v in sorted(values)]
    ids = {name: i for i, name in enumerate(names)}
    limits = {"train": cfg.max_train_samples, "validation": cfg.max_validation_samples, "test": cfg.max_test_samples}
    out = {}
    for name in SPLITS:
        df = _sample(splits[name], limits[name], seed)
        unknown = sorted(set(df["label"].astype(str)) - set(ids))
        if unknown:
            raise DataError(f"{name}: labels {unknown[:5]} do not occur in train (known: {names})")
        out[name] = pd.DataFrame(
            {"text": df["text"].astype(str).to_numpy(), "label": df["label"].astype(str).map(ids).to_numpy()}
        )
    return out, names


def _numeric(values) -> bool:
    return pd.api.types.is_numeric_dtype(pd.Series(values))


def fingerprint(cfg: Config) -> str:
    """Hash of everything the prepared data depends on."""
    blob = json.dumps({"data": cfg.data.model_dump(mode="json"), "seed": cfg.seed}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def prepare(cfg: Config, out_dir: Path | None = None) -> Path:
    """Load, split and write the prepared data; the directory appears whole or not at all."""
    out_dir = Path(out_dir or cfg.data.prepared_dir)
    splits, names = split(load_source(cfg.data, cfg.seed), cfg.data, cfg.seed)
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
