"""The classes ftlab trains on are exactly the ones it reports (issue 26).

Random label columns, with labels that differ in surrounding whitespace, in case, in how a number is
written, in JSON type (number, string, boolean), and Parquet categoricals with unused categories, are
prepared from CSV, JSON Lines and Parquet. Each run either refuses the file with a DataError for a
reason the labels really have (two labels that print alike), or prepares it so that: ``labels.json``
holds distinct labels no two of which print alike; every one of them has rows in train; and every
row's class is the label as written (its text, a JSON number's text), surrounding whitespace and
invisible characters aside, in every split.
"""

from __future__ import annotations

import csv
import json
import tempfile
import unicodedata
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ftlab.data.labels import printed
from ftlab.data.prepare import DataError, prepare
from ftlab.learning.config import load_config

NAMES = ["pos", "neg", "Pos", "POS", "1", "01", "1.0", "2", "10", "-1", "NaN", "nan", "true", "a b", "é", "e\u0301"]
EDGES = ["", " ", "  ", "\t", "\u00a0", "\u200b", "\ufeff"]
ROWS = 48


@st.composite
def label_columns(draw) -> tuple[list[tuple[str, str, str]], int]:
    """(name, prefix, suffix) per row: 2-5 classes, each written 1-3 ways, shuffled; and a seed."""
    names = draw(st.lists(st.sampled_from(NAMES), min_size=2, max_size=5, unique=True))
    forms = [(n, draw(st.sampled_from(EDGES)), draw(st.sampled_from([*EDGES, "\r"]))) for n in names]
    forms += draw(st.lists(st.tuples(st.sampled_from(names), st.sampled_from(EDGES), st.sampled_from(EDGES)), max_size=4))
    rows = [forms[i % len(forms)] for i in range(ROWS)]
    return draw(st.permutations(rows)), draw(st.integers(0, 3))


def expected(name: str) -> str:
    return unicodedata.normalize("NFC", name)  # the label as written, edges aside (é written as e + accent is é)


def write_csv(rows, path: Path) -> tuple[Path, list[str]]:
    path = path.with_suffix(".csv")
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows([f"text {i}", f"{pre}{name}{post}"] for i, (name, pre, post) in enumerate(rows))
    return path, [name for name, _, _ in rows]


def write_jsonl(rows, path: Path) -> tuple[Path, list[str]]:
    """Numbers and booleans as JSON types where the name is one (1, 1.0, -1, true), strings otherwise:
    the class is the text the number is written with."""
    path, lines, names = path.with_suffix(".jsonl"), [], []
    for i, (name, pre, post) in enumerate(rows):
        typed = {"1": 1, "1.0": 1.0, "2": 2, "10": 10, "-1": -1, "true": True}.get(name) if not pre + post else None
        value = typed if typed is not None and i % 2 else f"{pre}{name}{post}"
        lines.append(json.dumps({"text": f"text {i}", "label": value}))
        names.append(json.dumps(value) if not isinstance(value, str) else name)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, names


def write_categorical(rows, path: Path) -> tuple[Path, list[str]]:
    """A Parquet categorical with unused categories (one of them a whitespace twin of a used one)."""
    path = path.with_suffix(".parquet")
    values = [f"{pre}{name}{post}" for name, pre, post in rows]
    categories = sorted(set(values) | {"zz unused", f"{rows[0][0]} "})
    pd.DataFrame({"text": [f"text {i}" for i in range(len(rows))],
                  "label": pd.Categorical(values, categories=categories)}).to_parquet(path)
    return path, [name for name, _, _ in rows]


WRITERS = {"csv": write_csv, "jsonl": write_jsonl, "parquet categorical": write_categorical}


@pytest.mark.parametrize("writer", list(WRITERS))
@settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(column=label_columns())
def test_the_classes_trained_on_are_exactly_the_ones_reported(writer, column):
    rows, seed = column
    with tempfile.TemporaryDirectory() as tmp:
        path, names = WRITERS[writer](rows, Path(tmp) / "data")
        cfg = load_config(None, {"data.source": str(path), "data.prepared_dir": str(Path(tmp) / "prepared"), "seed": seed})
        written = {f"text {i}": expected(name) for i, name in enumerate(names)}
        alike = len({printed(n) for n in written.values()}) < len(set(written.values()))
        try:
            out = prepare(cfg)
        except DataError as e:
            assert alike and "print alike" in str(e), f"refused {sorted(set(written.values()))!r}: {e}"
            return
        assert not alike, f"accepted labels that print alike: {sorted(set(written.values()))!r}"
        reported = json.loads((out / "labels.json").read_text())
        splits = {s: pd.read_parquet(out / f"{s}.parquet") for s in ("train", "validation", "test")}
    assert sorted(reported) == sorted(set(written.values()))
    assert len({printed(n) for n in reported}) == len(reported)
    assert set(splits["train"]["label"]) == set(range(len(reported)))  # every reported class is trained on
    for df in splits.values():
        assert [reported[i] for i in df["label"]] == [written[t] for t in df["text"]]
