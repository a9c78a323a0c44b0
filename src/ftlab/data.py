"""Data: load the configured source, split it, and write the prepared splits as Parquet.

Prepared data is a directory with ``train/validation/test.parquet`` (columns ``text``, ``label``
as an integer id), ``labels.json`` (id → name) and ``meta.json`` (a fingerprint of the data
config, so a later stage can tell whether the prepared files still match params.yaml).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import numbers
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ftlab.config import BUILTIN_DEMO, SPLITS, Config, DataConfig
from ftlab.io import atomic_dir

log = logging.getLogger(__name__)
PREPARED_FILES = tuple(f"{s}.parquet" for s in SPLITS)

SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
DELIMITERS = {".csv": ",", ".tsv": "\t"}
csv.field_size_limit(2**24)  # 16 MiB: long documents are fine; a runaway quote still fails, with its line


class DataError(ValueError):
    """Input data that cannot be used; the message names the file, column or rows at fault."""


def read_table(path: Path, text_column: str, label_column: str, quoting: str = "auto") -> pd.DataFrame:
    """One file as a DataFrame with columns ``text``, ``label`` (as in the source) and ``origin``
    (where each row starts in the file: ``path:line``, or ``path record n`` for Parquet and JSON arrays).

    Texts are read as the exact strings in the file: nothing is stripped, unquoted or converted to
    a number. ``quoting`` applies to CSV and TSV files (see ``DataConfig.quoting``).
    """
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use one of {sorted(SUFFIXES)}")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a data file (data.source names one file, or one per split: "
                        "{train: FILE, validation: FILE, test: FILE})")
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None
    if not raw.strip():
        raise DataError(f"{path}: file is empty")
    if suffix == ".parquet":
        df = _read_parquet(path)
    else:
        text = _decode(path, raw)
        if suffix in DELIMITERS:
            df = _read_delimited(path, text, DELIMITERS[suffix], quoting, (text_column, label_column))
        else:
            df = _read_json(path, text)
    missing = [c for c in (text_column, label_column) if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; found {[c for c in df.columns if c != 'origin']} "
            "(set data.text_column / data.label_column)"
        )
    if df.empty:
        raise DataError(f"{path}: no rows")
    out = df[[text_column, label_column, "origin"]].set_axis(["text", "label", "origin"], axis=1)
    _check_text_values(out, path, text_column)
    return out


def _decode(path: Path, raw: bytes) -> str:
    """The file's text (UTF-8, a byte-order mark dropped), or an error naming the line and column."""
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(f"{path}: line {line}, column {column}: not valid UTF-8 ({e.reason}: "
                        f"{raw[e.start:e.end]!r} at byte {e.start}); save the file as UTF-8") from None


class _Unparsable(Exception):
    def __init__(self, line: int, message: str):
        super().__init__(f"line {line}: {message}")


def _parse_delimited(text: str, delimiter: str, quoted: bool) -> tuple[list[str], list[tuple[int, list[str]]]]:
    r"""Header and (first line, fields) of every record; blank lines are skipped. ``quoted``: fields
    in double quotes, quotes inside them doubled (Python's csv and pandas' default); otherwise a quote
    is an ordinary character and no field can hold the delimiter or a line break.

    Lines end at \n (or \r\n). A lone \r is text: pandas and csv.writer(lineterminator="\n") write
    it unquoted, and a reader that ended the line there would silently cut the text in two.
    """
    lone_cr = None
    if "\r" in text:
        lone_cr = next(c for c in map(chr, range(0xE000, 0xF900)) if c not in text)  # a private-use stand-in
        text = re.sub(r"\r(?!\n)", lone_cr, text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True,
                        quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE)
    header: list[str] | None = None
    records: list[tuple[int, list[str]]] = []
    end = 0
    try:
        for fields in reader:
            start, end = end + 1, reader.line_num
            if not fields:
                continue
            if lone_cr:
                fields = [f.replace(lone_cr, "\r") for f in fields]
            if header is None:
                header = fields
                continue
            if len(fields) != len(header):
                raise _Unparsable(start, f"{len(fields)} field(s) where the header has {len(header)}")
            records.append((start, fields))
    except csv.Error as e:
        raise _Unparsable(end + 1, str(e)) from None
    return header or [], records


def _read_delimited(path: Path, text: str, delimiter: str, quoting: str, columns: tuple[str, str]) -> pd.DataFrame:
    """A CSV or TSV file. ``quoting``: "csv", "none", or "auto": CSV quoting when some field starts
    with a quote and the whole file parses that way (a file written by csv.writer or pandas), else
    quotes as plain text (GLUE-style raw TSV, where a text may start with a lone quote)."""
    name = "TSV" if delimiter == "\t" else "CSV"
    if quoting == "auto" and not re.search(f'(?:^|{re.escape(delimiter)})"', text, re.MULTILINE):
        quoting = "none"  # no field starts with a quote: both ways read the same
    tries = ["csv", "none"] if quoting == "auto" else [quoting]
    errors = []
    for how in tries:
        try:
            header, records = _parse_delimited(text, delimiter, quoted=how == "csv")
            break
        except _Unparsable as e:
            errors.append(f"{'with CSV quoting' if how == 'csv' else 'with quotes as plain text'}: {e}")
    else:
        hint = ("set data.quoting: csv for a file with quoted fields, none for a raw file" if quoting == "auto"
                else f"data.quoting is {quoting}; the other setting may read it")
        raise DataError(f"{path}: cannot parse as {name} ({'; '.join(errors)}); {hint}")
    if quoting == "auto":
        log.info("%s: read %s", path, "with CSV quoting (fields in double quotes)" if how == "csv"
                 else "with quotes as plain text (no CSV quoting); set data.quoting to choose")
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; found {header} (set data.text_column / data.label_column)")
    text_at, label_at = (header.index(c) for c in columns)
    return pd.DataFrame({
        columns[0]: [fields[text_at] for _, fields in records],
        columns[1]: _labels(pd.Series([fields[label_at] or None for _, fields in records], dtype=object)),
        "origin": [f"{path}:{line}" for line, _ in records],
    })


def _labels(values: pd.Series) -> pd.Series:
    """Label strings as numbers when every one is a plain number (so 2 sorts before 10), else as read."""
    present = values.dropna()
    if not len(present) or not present.str.fullmatch(r"[-+]?\d+(?:\.\d+)?").all():
        return values
    return pd.to_numeric(present).reindex(values.index)


def _read_json(path: Path, text: str) -> pd.DataFrame:
    """JSON Lines (one object per line), or for ``.json`` a JSON array of objects."""
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {e.lineno}, column {e.colno}: not valid JSON ({e.msg})") from None
        where = [f"{path} record {i}" for i in range(1, len(items) + 1)]
        bad = next((w for w, item in zip(where, items, strict=True) if not isinstance(item, dict)), None)
        if bad:
            raise DataError(f"{bad}: expected a JSON object with the text and label fields")
    else:
        items, where = [], []
        for number, line in enumerate(text.split("\n"), 1):  # not splitlines(): U+2028 is valid inside JSON
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: line {number}, column {e.colno}: not valid JSON ({e.msg}); "
                                "JSON Lines needs one object per line") from None
            if not isinstance(item, dict):
                raise DataError(f"{path}: line {number}: expected a JSON object, got {type(item).__name__}")
            items.append(item)
            where.append(f"{path}:{number}")
    df = pd.DataFrame.from_records(items) if items else pd.DataFrame()
    df["origin"] = where
    return df


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises its own ArrowInvalid, OSError, ...
        raise DataError(f"{path}: not a readable Parquet file ({e})") from None
    df["origin"] = [f"{path} record {i}" for i in range(1, len(df) + 1)]
    return df


def _check_text_values(df: pd.DataFrame, path: Path, column: str) -> None:
    """Texts of a typed source (JSON, Parquet) must be strings or numbers, not lists, objects or booleans
    (a number is kept as its text; the validate stage flags a text column of mostly numbers)."""
    def text_like(v: object) -> bool:
        return v is None or isinstance(v, str) or (isinstance(v, numbers.Real) and not isinstance(v, bool))

    bad = ~df["text"].map(text_like).astype(bool)
    if bad.any():
        first = df.loc[bad].iloc[0]
        raise DataError(f"{path}: column {column!r} holds {int(bad.sum())} value(s) that are not text "
                        f"({type(first['text']).__name__}), e.g. at {first['origin']}")


def load_source(cfg: DataConfig, seed: int) -> dict[str, pd.DataFrame]:
    """The raw splits the source provides (at least ``train``), columns ``text``, ``label`` and,
    for files, ``origin``."""
    source = cfg.source
    if isinstance(source, dict):
        return {s: read_table(Path(p), cfg.text_column, cfg.label_column, cfg.quoting) for s, p in source.items()}
    if source == BUILTIN_DEMO:
        from ftlab.demo import generate_demo

        return {"train": generate_demo(cfg.demo.n_samples, cfg.demo.label_noise, seed)}
    if source.startswith("builtin:"):
        raise DataError(f"data.source: unknown built-in dataset {source!r}; known: {BUILTIN_DEMO!r}")
    if source.startswith("hub:"):
        return _load_hub(cfg, source.removeprefix("hub:"))
    return {"train": read_table(Path(source), cfg.text_column, cfg.label_column, cfg.quoting)}


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


def _where(df: pd.DataFrame, mask: pd.Series) -> str:
    """Up to five offending rows: where they start in their file when known, else their positions."""
    rows = df.loc[mask]
    if "origin" in rows and rows["origin"].notna().all():
        return ", ".join(rows["origin"].head(5))
    return f"rows {[int(i) for i in range(len(df)) if mask.iloc[i]][:5]}"


def _check(df: pd.DataFrame, split: str) -> None:
    bad = df["text"].isna() | (df["text"].astype(str).str.strip() == "")
    if bad.any():
        raise DataError(f"{split}: {int(bad.sum())} null or blank text(s), e.g. {_where(df, bad)}")
    if df["label"].isna().any():
        raise DataError(f"{split}: null label(s), e.g. {_where(df, df['label'].isna())}")


def _draw(df: pd.DataFrame, n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``n`` rows and the rest, stratified by label and seeded. scikit-learn's split is used where it
    applies (at least two rows per class, and a row of every class on both sides); otherwise each
    class gets its share of the ``n`` rows by largest remainder, so any ``n`` up to the size is honoured."""
    from sklearn.model_selection import train_test_split  # 0.8 s: only `prepare` splits

    labels = df["label"].astype(str)
    counts = labels.value_counts(sort=False)
    if counts.min() >= 2 and min(n, len(df) - n) >= len(counts):
        try:
            keep, rest = train_test_split(df, train_size=n, random_state=seed, stratify=df["label"])
            return keep, rest
        except ValueError:
            pass
    exact = counts * n / len(df)
    quota = exact.astype(int)
    for name in (exact - quota).sort_values(ascending=False, kind="stable").index[: n - int(quota.sum())]:
        quota[name] += 1
    rng = np.random.default_rng(seed)
    positions = np.arange(len(df))
    chosen = np.concatenate([rng.permutation(positions[(labels == name).to_numpy()])[:k] for name, k in quota.items()])
    chosen = rng.permutation(chosen)
    mask = np.zeros(len(df), dtype=bool)
    mask[chosen] = True
    return df.iloc[chosen], df.iloc[np.flatnonzero(~mask)]


def _sample(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """A stratified, seeded subsample of ``n`` rows (all rows when ``n`` is None or larger)."""
    if n is None or n >= len(df):
        return df
    return _draw(df, n, seed)[0]


def _split_off(df: pd.DataFrame, size: float, seed: int, target: str, key: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the share ``size`` (the value of params key ``key``) off the train rows as ``target``."""
    n_off = math.ceil(size * len(df))  # as scikit-learn rounds a test share
    if len(df) - n_off < 1:
        raise DataError(
            f"train: {len(df)} row(s) cannot give {key}={size:g} of them to {target} ({n_off} row(s)) and keep "
            f"any to train; add rows, or give {target} a file of its own (data.source: {{train: FILE, {target}: FILE}})")
    return _draw(df, len(df) - n_off, seed)


def split(raw: dict[str, pd.DataFrame], cfg: DataConfig, seed: int) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Train/validation/test with integer labels, and the label names (id order)."""
    for name, df in raw.items():
        _check(df, name)
    splits = dict(raw)
    if "test" not in splits:
        splits["train"], splits["test"] = _split_off(splits["train"], cfg.test_size, seed, "test", "data.test_size")
    if "validation" not in splits:
        share = cfg.validation_size / (1 - cfg.test_size) if "test" not in raw else cfg.validation_size
        key = "data.validation_size" + (f" (a {share:.4g} share of what data.test_size left)" if "test" not in raw else "")
        splits["train"], splits["validation"] = _split_off(splits["train"], share, seed, "validation", key)

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
        columns = {"text": df["text"].astype(str).to_numpy(), "label": df["label"].astype(str).map(ids).to_numpy()}
        if "origin" in df and df["origin"].notna().all():
            columns["origin"] = df["origin"].to_numpy()
        out[name] = pd.DataFrame(columns)
    return out, names


def _numeric(values) -> bool:
    return pd.api.types.is_numeric_dtype(pd.Series(values))


def fingerprint(cfg: Config) -> str:
    """Hash of everything the prepared data depends on: the data params, the seed and the bytes of
    every source file (a file edited in place makes the prepared data stale too)."""
    source = cfg.data.source
    files = [Path(p) for p in source.values()] if isinstance(source, dict) else (
        [] if source.startswith(("builtin:", "hub:")) else [Path(source)])
    digests = {str(f): hashlib.sha256(f.read_bytes()).hexdigest() if f.is_file() else None for f in files}
    blob = json.dumps({"data": cfg.data.model_dump(mode="json"), "seed": cfg.seed, "files": digests}, sort_keys=True)
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
