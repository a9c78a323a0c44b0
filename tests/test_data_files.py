"""Data files as common tools write them, read back exactly or refused with a named error.

A property test writes random texts (quotes, tabs, line breaks, commas, Unicode, surrounding spaces,
numbers) with every writer below and reads them through every dialect ftlab supports; each text
must come back byte-identical in the prepared data, or the file must be refused with a DataError
for a reason it really has. Then real-world layouts one by one, bad files and where their errors
point, and subsampling sizes at the edge.
"""

from __future__ import annotations

import csv
import json
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ftlab.data.labels import is_blank
from ftlab.data.prepare import DataError, load_prepared, prepare
from ftlab.learning.config import load_config
from tests.conftest import toy_reviews


def cfg_for(tmp: Path, source, **data):
    return load_config(None, {"data.source": source, "data.prepared_dir": str(tmp / "prepared"),
                              **{f"data.{k}": v for k, v in data.items()}})


def _csv_module(suffix: str, **kwargs) -> Callable[[pd.DataFrame, Path], Path]:
    def write(df: pd.DataFrame, path: Path) -> Path:
        path = path.with_suffix(suffix)
        with open(path, "w", newline="", encoding="utf-8") as f:  # csv's default line end: \r\n
            writer = csv.writer(f, delimiter="\t" if suffix == ".tsv" else ",", **kwargs)
            writer.writerow(df.columns)
            writer.writerows(df.itertuples(index=False))
        return path
    return write


def _pandas(suffix: str, **kwargs) -> Callable[[pd.DataFrame, Path], Path]:
    def write(df: pd.DataFrame, path: Path) -> Path:
        path = path.with_suffix(suffix)
        df.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",", **kwargs)
        return path
    return write


def raw_tsv(df: pd.DataFrame, path: Path) -> Path:
    """GLUE-style: fields joined by tabs, nothing quoted or escaped."""
    path = path.with_suffix(".tsv")
    path.write_text("\n".join("\t".join(map(str, row)) for row in [df.columns, *df.itertuples(index=False)]) + "\n",
                    encoding="utf-8")
    return path


def jsonl_lines(df: pd.DataFrame, path: Path) -> Path:
    path = path.with_suffix(".jsonl")
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in df.to_dict("records")), encoding="utf-8")
    return path


def json_array(df: pd.DataFrame, path: Path) -> Path:
    path = path.with_suffix(".json")
    path.write_text(json.dumps(df.to_dict("records"), indent=1), encoding="utf-8")
    return path


def pandas_jsonl(df: pd.DataFrame, path: Path) -> Path:
    path = path.with_suffix(".jsonl")
    df.to_json(path, orient="records", lines=True, force_ascii=False)
    return path


def parquet(df: pd.DataFrame, path: Path) -> Path:
    path = path.with_suffix(".parquet")
    df.to_parquet(path, index=False)
    return path


# (writer, the data.quoting values that must read it back, whether it can hold a tab or line break)
WRITERS = {
    "pandas csv": (_pandas(".csv"), ["auto", "csv"], True),
    "pandas tsv": (_pandas(".tsv"), ["auto", "csv"], True),
    "pandas csv utf-8-sig (Excel)": (_pandas(".csv", encoding="utf-8-sig"), ["auto", "csv"], True),
    "csv.writer csv": (_csv_module(".csv"), ["auto", "csv"], True),
    "csv.writer tsv": (_csv_module(".tsv"), ["auto", "csv"], True),
    "csv.writer tsv QUOTE_ALL": (_csv_module(".tsv", quoting=csv.QUOTE_ALL), ["auto", "csv"], True),
    "csv.writer csv QUOTE_NONNUMERIC": (_csv_module(".csv", quoting=csv.QUOTE_NONNUMERIC), ["auto", "csv"], True),
    "raw tsv (GLUE)": (raw_tsv, ["none"], False),
    "json lines": (jsonl_lines, ["auto"], True),
    "pandas json lines": (pandas_jsonl, ["auto"], True),
    "json array": (json_array, ["auto"], True),
    "parquet": (parquet, ["auto"], True),
}

PIECES = ['"', '""', "'", "\t", "\n", "\r\n", "\r", ",", ";", " ", "  ", "\\", "é", "中文", "😀", "\u2028", "NA", "null",
          "nan", "007", "1.50", "-3", "1e5", "True", "#", "=1+2"]
TEXT = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=4)), min_size=1, max_size=6).map("".join)


def roundtrip(write, quoting: str, texts: list[str]):
    """The prepared train texts in file order, or the DataError that refused the file."""
    df = pd.DataFrame({"text": texts, "label": ["a" if i % 2 else "b" for i in range(len(texts))]})
    with tempfile.TemporaryDirectory() as tmp:
        path = write(df, Path(tmp) / "data")
        cfg = cfg_for(Path(tmp), {"train": str(path), "validation": str(path), "test": str(path)}, quoting=quoting)
        try:
            splits, labels = load_prepared(cfg)
        except DataError as e:
            return e
        return list(splits["train"]["text"]), [labels[i] for i in splits["train"]["label"]]


@pytest.mark.parametrize("writer", list(WRITERS))
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(TEXT, min_size=2, max_size=5))
def test_random_texts_come_back_byte_identical_or_are_refused_by_name(writer, texts):
    write, dialects, holds_breaks = WRITERS[writer]
    blank = any(is_blank(t) for t in texts)  # no visible character (spaces, zero-width, controls)
    unrepresentable = not holds_breaks and any(c in t for t in texts for c in "\t\n")
    for quoting in dialects:
        got = roundtrip(write, quoting, texts)
        if isinstance(got, DataError):
            assert blank or unrepresentable, f"{writer}, quoting={quoting}: refused {texts!r}: {got}"
            assert str(got).startswith(("train: ", "/")), got  # names the split or the file
        else:
            assert not blank, f"{writer}: blank text accepted: {got}"
            assert got[0] == texts, f"{writer}, quoting={quoting}: {texts!r} came back as {got[0]!r}"
            assert got[1] == ["a" if i % 2 else "b" for i in range(len(texts))]


@settings(max_examples=25, deadline=None, derandomize=True)
@given(texts=st.lists(TEXT.filter(lambda t: not t.startswith('"') and "\t" not in t and not is_blank(t)
                                  and "\n" not in t), min_size=2, max_size=5))
def test_raw_tsv_with_lone_quotes_reads_unchanged_when_detected(texts):
    """quoting: auto on a GLUE-style file (no field starting with a quote): every quote is text."""
    got = roundtrip(raw_tsv, "auto", texts)
    assert not isinstance(got, DataError), got
    assert got[0] == texts


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def read_train(tmp_path, text: str, suffix: str = ".tsv", **data) -> list[str]:
    path = write_text(tmp_path / f"data{suffix}", text)
    cfg = cfg_for(tmp_path, {"train": str(path), "validation": str(path), "test": str(path)}, **data)
    return list(load_prepared(cfg)[0]["train"]["text"])


def test_quoted_tsv_from_pandas_is_unquoted(tmp_path):
    """The issue's case: pandas writes he said "hi" with its quotes doubled inside a quoted field; the
    prepared text is the one written, not the field's quoting."""
    texts = ['he said "hi"', "plain", 'a "quoted" word and\ta tab']
    df = pd.DataFrame({"text": texts, "label": ["x", "y", "x"]})
    df.to_csv(tmp_path / "data.tsv", sep="\t", index=False)
    assert '"he said ""hi"""' in (tmp_path / "data.tsv").read_text()
    path = tmp_path / "data.tsv"
    cfg = cfg_for(tmp_path, {"train": str(path), "validation": str(path), "test": str(path)})
    assert list(load_prepared(cfg)[0]["train"]["text"]) == texts


def test_glue_style_lone_quotes_are_kept(tmp_path):
    """RTE/STS-B style: a text that starts with a lone quote, quotes inside unquoted fields."""
    text = ('text\tlabel\n"Then the captain was gone.\t0\n"Stop," he said. It "works".\t1\n'
            'a "b" c\t0\n')
    assert read_train(tmp_path, text) == ['"Then the captain was gone.', '"Stop," he said. It "works".', 'a "b" c']


def test_forcing_csv_quoting_on_a_raw_file_names_the_line_and_the_setting(tmp_path):
    text = 'text\tlabel\nok\t0\n"Stop," he said.\t1\n'
    with pytest.raises(DataError, match=r'data\.tsv: cannot parse as TSV \(with CSV quoting: line 3: .*data\.quoting is csv'):
        read_train(tmp_path, text, quoting="csv")
    assert read_train(tmp_path, text, quoting="none") == ["ok", '"Stop," he said.']


def test_row_with_wrong_field_count_names_its_line(tmp_path):
    with pytest.raises(DataError, match=r"line 4: 3 field\(s\) where the header has 2"):
        read_train(tmp_path, "text\tlabel\na\t0\nb\t1\nc\tx\t1\n")


def test_invalid_utf8_names_line_and_column(tmp_path):
    lines = [b"text,label"] + [f"sentence number {i},{i % 2}".encode() for i in range(60)]
    lines.insert(61, b"caf\xe9 au lait,1")  # on line 62, far past the first few kilobytes' offsets
    (tmp_path / "d.csv").write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(DataError, match=r"d\.csv: line 62, column 4: not valid UTF-8"):
        prepare(cfg_for(tmp_path, str(tmp_path / "d.csv")))


@pytest.mark.parametrize(("content", "message"), [
    ('{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n{"text": "c" "label": 1}\n',
     r"d\.jsonl: line 3, column 14: not valid JSON"),
    ('{"text": "a", "label": 1}\n\n["b", 0]\n', r"d\.jsonl: line 3: expected a JSON object, got list"),
    ('{"text": ["a"], "label": 1}\n{"text": "b", "label": 0}\n', r"column 'text' holds 1 value\(s\) that are not text \(list\), e\.g\. at .*d\.jsonl:1"),
])
def test_malformed_json_lines_name_their_line(tmp_path, content, message):
    with pytest.raises(DataError, match=message):
        prepare(cfg_for(tmp_path, str(write_text(tmp_path / "d.jsonl", content))))


def test_json_array_files_are_read(tmp_path):
    path = write_text(tmp_path / "d.json", json.dumps(toy_reviews(60).to_dict("records")))
    assert sum(map(len, load_prepared(cfg_for(tmp_path, str(path)))[0].values())) == 60
    bad = write_text(tmp_path / "bad.json", '[{"text": "a", "label": 1},\n "b"]')
    with pytest.raises(DataError, match=r"bad\.json record 2: expected a JSON object"):
        prepare(cfg_for(tmp_path, str(bad)))


def test_a_directory_is_not_reported_as_missing(tmp_path):
    (tmp_path / "data.csv").mkdir()
    with pytest.raises(DataError, match=r"data\.csv: is a directory, not a data file"):
        prepare(cfg_for(tmp_path, str(tmp_path / "data.csv")))


def test_null_text_and_label_errors_name_file_lines(tmp_path):
    path = write_text(tmp_path / "d.csv", "text,label\ngood,1\n  ,0\nfine,\n")
    with pytest.raises(DataError, match=r"train: 1 null or blank text\(s\), e\.g\. .*d\.csv:3$"):
        prepare(cfg_for(tmp_path, str(path)))
    write_text(path, "text,label\ngood,1\nbad,\n")
    with pytest.raises(DataError, match=r"train: null label\(s\), e\.g\. .*d\.csv:3$"):
        prepare(cfg_for(tmp_path, str(path)))


def test_numbers_in_a_text_column_stay_as_written(tmp_path):
    """A CSV keeps "007" and "1.50" as they are (the validate stage flags a column of numbers)."""
    assert read_train(tmp_path, "text,label\n007,a\n1.50,b\nNA,a\n", suffix=".csv") == ["007", "1.50", "NA"]


# ---- split and sample sizes ------------------------------------------------------------------------


def four_classes(n: int) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"text {i}" for i in range(n)], "label": [f"c{i % 4}" for i in range(n)]})


def test_a_sample_size_one_row_short_of_the_split_is_honoured(tmp_path):
    """The issue's case: max_validation_samples 1000 of a 1,001-row, 4-class validation file."""
    train, validation = four_classes(400), four_classes(1001)
    validation["text"] += " (validation)"
    paths = {s: str(parquet(df, tmp_path / s)) for s, df in (("train", train), ("validation", validation))}
    splits, _ = load_prepared(cfg_for(tmp_path, paths, max_validation_samples=1000, max_test_samples=79))
    assert len(splits["validation"]) == 1000 and len(splits["test"]) == 79  # of 80
    assert sorted(splits["validation"]["label"].value_counts()) == [250, 250, 250, 250]  # still stratified
    assert splits["validation"]["text"].is_unique


def test_sizes_at_the_edge_of_the_split_are_honoured(tmp_path):
    df = four_classes(10)  # 7 train, 1 validation, 2 test: fewer than the classes on some sides
    splits, _ = load_prepared(cfg_for(tmp_path, str(parquet(df, tmp_path / "d")), validation_size=0.1, test_size=0.2))
    assert {k: len(v) for k, v in splits.items()} == {"train": 7, "validation": 1, "test": 2}
    assert sorted(pd.concat(splits.values())["text"]) == sorted(df["text"])


@pytest.mark.parametrize(("rows", "message"), [
    (1, r"train: 1 row\(s\) cannot give data\.test_size=0\.2 of them to test \(1 row\(s\)\) and keep any to train"),
    (2, r"train: 1 row\(s\) cannot give data\.validation_size \(a 0\.125 share of what data\.test_size left\)=0\.125 "
        r"of them to validation"),
])
def test_files_too_small_to_split_name_the_split_sizes_and_key(tmp_path, rows, message):
    path = parquet(four_classes(rows), tmp_path / "tiny")
    with pytest.raises(DataError, match=message):
        prepare(cfg_for(tmp_path, str(path)))


def test_an_edited_source_file_makes_prepared_data_stale(tmp_path):
    path = tmp_path / "d.csv"
    toy_reviews(100).to_csv(path, index=False)
    cfg = cfg_for(tmp_path, str(path))
    before = load_prepared(cfg)[0]["train"]
    toy_reviews(100, seed=5).to_csv(path, index=False)  # same path, same params, other rows
    after = load_prepared(cfg)[0]["train"]
    assert set(after["text"]) != set(before["text"])


# ---- issue 26, item 10: large files are read in chunks, with the result of reading them whole -----
def mixed_rows(n: int) -> list[tuple[str, str]]:
    """Texts with quotes, commas, line breaks and lone \r; labels with a rare class and a one-row class."""
    texts = ['plain {}', 'with "quotes" {}', "comma, inside {}", "line\nbreak {}", "lone\rcr {}", "  spaced {}  "]
    labels = ["pos", "neg", "neu"] * 9 + ["rare"]
    rows = [(texts[i % len(texts)].format(i), labels[(i * 7) % len(labels)]) for i in range(n)]
    return [*rows, ("only one of its class", "single")]


def whole_read(cfg) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """The in-memory path: every file read whole, then split."""
    from ftlab.data.prepare import load_source, split

    task = cfg.task_type()
    return split(load_source(cfg.data, task, cfg.seed), cfg.data, task, cfg.seed)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
@pytest.mark.parametrize("limits", [{}, {"max_train_samples": 40, "max_test_samples": 9}])
def test_a_chunked_prepare_is_identical_to_reading_the_file_whole(tmp_path, suffix, limits, monkeypatch):
    import ftlab.data.streamed

    monkeypatch.setattr(ftlab.data.streamed, "BUCKET_ROWS", 16)  # each split reordered 16 rows at a time
    df = pd.DataFrame(mixed_rows(300), columns=["text", "label"])
    path = tmp_path / f"data{suffix}"
    if suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        df.to_json(path, orient="records", lines=True, force_ascii=False)
    cfg = cfg_for(tmp_path, str(path), **limits)
    expected, names = whole_read(cfg)
    for rows in (1, 7, 10_000):
        out = prepare(cfg, tmp_path / f"prepared-{rows}", chunk_rows=rows)
        assert json.loads((out / "labels.json").read_text()) == names
        for split, frame in expected.items():
            pd.testing.assert_frame_equal(pd.read_parquet(out / f"{split}.parquet"), frame, check_dtype=False)
    assert "single" in names  # a one-row class stays in train


def test_per_split_files_are_chunked_alike(tmp_path):
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    pd.DataFrame(mixed_rows(120), columns=["text", "label"]).to_csv(train, index=False)
    pd.DataFrame(mixed_rows(30)[:-1], columns=["text", "label"]).to_csv(test, index=False)
    cfg = cfg_for(tmp_path, {"train": str(train), "test": str(test)})
    expected, names = whole_read(cfg)
    out = prepare(cfg, tmp_path / "p", chunk_rows=4)
    assert json.loads((out / "labels.json").read_text()) == names
    for split, frame in expected.items():
        pd.testing.assert_frame_equal(pd.read_parquet(out / f"{split}.parquet"), frame, check_dtype=False)


def test_a_long_read_says_how_far_it_got(tmp_path, caplog, monkeypatch):
    import ftlab.data.delimited

    monkeypatch.setattr(ftlab.data.delimited, "PROGRESS_SECONDS", 0.0)
    path = tmp_path / "data.csv"  # progress is looked at every 16,384 lines
    path.write_text("text,label\n" + "".join(f"text number {i},{'ab'[i % 2]}\n" for i in range(40_000)))
    with caplog.at_level("INFO", logger="ftlab.data.delimited"):
        prepare(cfg_for(tmp_path, str(path)))
    assert re.search(r"data\.csv: read \d+ of \d+ MB \(\d+%\), \d+ lines", caplog.text), caplog.text


def test_sigterm_stops_a_prepare_promptly_and_leaves_earlier_data(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "data.csv"
    pd.DataFrame(mixed_rows(300), columns=["text", "label"]).to_csv(path, index=False)
    prepare(cfg_for(tmp_path, str(path)))  # the earlier prepared data
    before = {p.name: p.read_bytes() for p in (tmp_path / "prepared").iterdir()}
    with open(path, "a", encoding="utf-8") as f:  # a file that takes a while: about 400,000 rows
        f.writelines(f"text number {i},{'ab'[i % 2]}\n" for i in range(400_000))
    script = ("import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
              "import ftlab.data.delimited as d; d.PROGRESS_SECONDS = 0.1\n"
              "from ftlab.learning.config import load_config; from ftlab.data.prepare import prepare\n"
              f"prepare(load_config(None, {{'data.source': {str(path)!r}, "
              f"'data.prepared_dir': {str(tmp_path / 'prepared')!r}}}))\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:  # reading: the progress lines have started
        if " MB (" in line:
            break
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert time.monotonic() - sent < 3, "SIGTERM took more than 3 s to stop prepare"
    assert proc.returncode != 0
    assert {p.name: p.read_bytes() for p in (tmp_path / "prepared").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".prepared")] == []
