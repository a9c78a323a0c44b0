"""Data loading from every file format and source, the column options, splits and bad input."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ftlab.data.prepare import DataError, load_prepared, prepare
from ftlab.learning.config import load_config
from tests.conftest import toy_reviews


def cfg_for(tmp_path, source, **data):
    return load_config(None, {"data.source": source, "data.prepared_dir": str(tmp_path / "prepared"),
                              **{f"data.{k}": v for k, v in data.items()}})


def write(df: pd.DataFrame, path):
    suffix = path.suffix
    if suffix == ".csv":
        df.to_csv(path, index=False)
    elif suffix == ".tsv":
        df.to_csv(path, sep="\t", index=False)
    elif suffix == ".jsonl":
        df.to_json(path, orient="records", lines=True)
    else:
        df.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_every_file_format_with_custom_columns(tmp_path, suffix):
    df = toy_reviews(100).rename(columns={"text": "review", "label": "sentiment"})
    df["extra"] = 1
    path = write(df, tmp_path / f"reviews{suffix}")
    cfg = cfg_for(tmp_path, str(path), text_column="review", label_column="sentiment")
    prepare(cfg)
    splits, labels = load_prepared(cfg)
    assert labels == ["neg", "pos"]
    assert {k: len(v) for k, v in splits.items()} == {"train": 70, "validation": 10, "test": 20}
    assert all(list(v.columns) == ["text", "label", "origin"] for v in splits.values())
    together = pd.concat(splits.values())
    assert sorted(together["text"]) == sorted(df["review"])  # nothing lost or duplicated
    # each row knows where it came from: the file's line (record, for Parquet), header on line 1
    where = {o: t for o, t in zip(together["origin"], together["text"], strict=True)}
    unit = f"{path} record " if suffix == ".parquet" else f"{path}:"
    first = 1 if suffix in (".parquet", ".jsonl") else 2
    assert where[f"{unit}{first}"] == df["review"][0] and where[f"{unit}{first + 99}"] == df["review"][99]
    for v in splits.values():  # stratified: both classes in every split, balanced
        assert v["label"].mean() == pytest.approx(0.5)


def test_per_split_files_are_kept_as_given(tmp_path):
    train = write(toy_reviews(60, seed=1), tmp_path / "train.csv")
    test = write(toy_reviews(20, seed=2), tmp_path / "test.jsonl")
    cfg = cfg_for(tmp_path, {"train": str(train), "test": str(test)}, validation_size=0.25)
    splits, _ = load_prepared(cfg)
    assert len(splits["test"]) == 20 and len(splits["validation"]) == 15 and len(splits["train"]) == 45


def test_integer_labels_and_max_samples(tmp_path):
    df = toy_reviews(200)
    df["label"] = (df["label"] == "pos").astype(int)
    cfg = cfg_for(tmp_path, str(write(df, tmp_path / "d.csv")), max_train_samples=30, max_test_samples=10)
    splits, labels = load_prepared(cfg)
    assert labels == ["0", "1"]
    assert len(splits["train"]) == 30 and len(splits["test"]) == 10
    assert splits["train"]["label"].sum() == 15  # still stratified


def test_splits_are_deterministic_and_follow_the_seed(tmp_path):
    path = write(toy_reviews(100), tmp_path / "d.csv")
    a = load_prepared(cfg_for(tmp_path / "a", str(path)))[0]["test"]
    b = load_prepared(cfg_for(tmp_path / "b", str(path)))[0]["test"]
    pd.testing.assert_frame_equal(a, b)
    c = load_config(None, {"seed": 7, "data.source": str(path), "data.prepared_dir": str(tmp_path / "c")})
    assert set(load_prepared(c)[0]["test"]["text"]) != set(a["text"])


def test_builtin_demo_source(tmp_path):
    cfg = cfg_for(tmp_path, "builtin:demo", demo={"n_samples": 200, "label_noise": 0.0})
    splits, labels = load_prepared(cfg)
    assert labels == ["negative", "positive"] and sum(map(len, splits.values())) == 200


def test_hub_code_path_with_a_local_dataset_directory(tmp_path):
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    write(toy_reviews(80, seed=3), folder / "train.csv")
    write(toy_reviews(30, seed=4), folder / "test.csv")
    splits, _ = load_prepared(cfg_for(tmp_path, f"hub:{folder}"))
    assert len(splits["test"]) == 30 and len(splits["train"]) + len(splits["validation"]) == 80


def test_stale_prepared_data_is_rebuilt(tmp_path):
    path = write(toy_reviews(100), tmp_path / "d.csv")
    load_prepared(cfg_for(tmp_path, str(path)))
    splits, _ = load_prepared(cfg_for(tmp_path, str(path), max_train_samples=20))
    assert len(splits["train"]) == 20
    meta = json.loads((tmp_path / "prepared/meta.json").read_text())
    assert meta["rows"]["train"] == 20


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "absent.csv", "not found"),
        (lambda p: (p / "empty.csv").touch() or p / "empty.csv", "empty"),
        (lambda p: write(pd.DataFrame({"body": ["a b"], "y": [1]}), p / "cols.csv"),
         r"missing column\(s\) \['text', 'label'\]; found \['body', 'y'\]"),
        (lambda p: (p / "latin.csv").write_bytes(b"text,label\ncaf\xe9 ok,1\nbad,0\n") and p / "latin.csv",
         "not valid UTF-8"),
        (lambda p: write(pd.DataFrame({"text": ["good one", " ", "bad"], "label": [1, 0, 0]}), p / "blank.csv"),
         "blank text"),
        (lambda p: write(pd.DataFrame({"text": [f"t {i}" for i in range(20)], "label": [1] * 20}), p / "one.csv"),
         "a single class"),
        (lambda p: p / "data.xlsx", "unsupported file type"),
    ],
)
def test_bad_input_is_named_and_writes_nothing(tmp_path, make, message):
    path = make(tmp_path)
    cfg = cfg_for(tmp_path, str(path))
    with pytest.raises(DataError, match=message):
        prepare(cfg)
    assert not (tmp_path / "prepared").exists()


def test_test_labels_unseen_in_train_are_rejected(tmp_path):
    train = write(toy_reviews(40), tmp_path / "train.csv")
    test = toy_reviews(10)
    test.loc[0, "label"] = "neutral"
    cfg = cfg_for(tmp_path, {"train": str(train), "test": str(write(test, tmp_path / "test.csv"))})
    with pytest.raises(DataError, match=r"test: labels \['neutral'\] do not occur in train"):
        prepare(cfg)
