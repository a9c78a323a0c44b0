"""Label and header hygiene (issue 26): inputs that used to give silent wrong results, crashes or weak
errors. Every class ftlab trains on prints unlike every other; a label is the text the user wrote;
a repeated header, a duplicated column or a blank-looking text is named by its line."""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import pandas as pd
import pytest

from ftlab.core.config import ValidationConfig
from ftlab.data.prepare import DataError, prepare
from ftlab.data.validation import ValidationFailed, raise_on_failure, validate
from ftlab.learning.config import load_config


def cfg_for(tmp: Path, source, **data):
    return load_config(None, {"data.source": str(source), "data.prepared_dir": str(tmp / "prepared"),
                              **{f"data.{k}": v for k, v in data.items()}})


def write_csv(path: Path, labels: list[str], header: str = "text,label", end: str = "\n") -> Path:
    path.write_text(header + end + "".join(f"text number {i},{label}{end}" for i, label in enumerate(labels)),
                    encoding="utf-8", newline="")
    return path


def prepared(tmp_path: Path, source, **data) -> tuple[list[str], dict[str, pd.DataFrame]]:
    out = prepare(cfg_for(tmp_path, source, **data))
    names = json.loads((out / "labels.json").read_text())
    return names, {s: pd.read_parquet(out / f"{s}.parquet") for s in ("train", "validation", "test")}


# ---- 1. labels that differ only in whitespace ---------------------------------------------------
def test_labels_differing_in_surrounding_whitespace_are_one_class_with_a_warning(tmp_path, caplog):
    labels = ["pos", "neg"] * 150 + ["pos "] * 4 + ["neg\r"] * 2
    path = write_csv(tmp_path / "a.csv", labels[:-1])  # CRLF ends a line; \r\r\n and a last \r do not
    path.write_bytes(path.read_bytes().replace(b"neg\r\n", b"neg\r\r\n") + b"text last,neg\r")
    with caplog.at_level(logging.WARNING):
        names, splits = prepared(tmp_path, path)
    assert names == ["neg", "pos"]
    assert sum(len(df) for df in splits.values()) == len(labels)
    message = caplog.text
    assert "'pos '" in message and "4 row(s)" in message and "'neg\\r'" in message and "2 row(s)" in message
    assert "a.csv:302" in message  # the first 'pos ' (line 1 is the header)


def test_labels_that_print_alike_but_differ_are_refused_with_their_lines(tmp_path):
    labels = ["pos", "neg"] * 50 + ["ne\u200bg"] * 3
    with pytest.raises(DataError) as e:
        prepare(cfg_for(tmp_path, write_csv(tmp_path / "a.csv", labels)))
    assert "'neg'" in str(e.value) and "'ne\\u200bg'" in str(e.value) and "a.csv:102" in str(e.value)


def test_a_label_that_is_only_whitespace_is_a_missing_label_named_by_line(tmp_path):
    with pytest.raises(DataError, match=r"label.*a\.csv:4"):
        prepare(cfg_for(tmp_path, write_csv(tmp_path / "a.csv", ["pos", "neg", " "] + ["pos", "neg"] * 50)))


# ---- 2. distinct labels merged ------------------------------------------------------------------
def test_labels_are_the_text_written_not_a_number(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        names, _ = prepared(tmp_path, write_csv(tmp_path / "a.csv", ["1", "01", "2"] * 40))
    assert names == ["01", "1", "2"]
    assert "same number" in caplog.text
    names, _ = prepared(tmp_path, write_csv(tmp_path / "b.csv", ["0", "1", "1.0"] * 40))
    assert names == ["0", "1", "1.0"]


def test_numeric_labels_keep_number_order(tmp_path):
    names, splits = prepared(tmp_path, write_csv(tmp_path / "a.csv", ["2", "10", "1"] * 40))
    assert names == ["1", "2", "10"]
    train = pd.read_csv(tmp_path / "a.csv", dtype=str)
    by_text = dict(zip(train["text"], train["label"], strict=True))
    for df in splits.values():  # ids still point at the label each row was written with
        assert all(names[i] == by_text[t] for t, i in zip(df["text"], df["label"], strict=True))


# ---- 3. numeric texts in JSON keep their text ----------------------------------------------------
def test_json_numbers_used_as_texts_and_labels_keep_their_text(tmp_path):
    path = tmp_path / "a.jsonl"
    lines = [json.dumps({"text": f"plain {i}", "label": [1, 2][i % 2]}) for i in range(60)]
    lines += ['{"text": 1e5, "label": 1}', '{"text": 1.10, "label": 2}', '{"text": 7, "label": 1.0}']
    path.write_text("\n".join(lines) + "\n")
    names, splits = prepared(tmp_path, path)
    texts = set(pd.concat(splits.values())["text"])
    assert {"1e5", "1.10", "7"} <= texts
    assert names == ["1", "1.0", "2"]


# ---- 4. a header repeated mid-file --------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_a_header_repeated_mid_file_is_named_by_line(tmp_path, suffix):
    sep = "\t" if suffix == ".tsv" else ","
    rows = [f"text{sep}label"] + [f"t {i}{sep}{'ab'[i % 2]}" for i in range(30)]
    path = tmp_path / f"a{suffix}"
    path.write_text("\n".join(rows + rows) + "\n")
    with pytest.raises(DataError, match=rf"a\{suffix}:32: .*header"):
        prepare(cfg_for(tmp_path, path))


# ---- 5. categorical labels with an unused category -----------------------------------------------
def test_an_unused_category_does_not_break_stratification(tmp_path):
    labels = pd.Categorical(["rare"] * 20 + ["common"] * 380, categories=["common", "rare", "unused"])
    path = tmp_path / "a.parquet"
    pd.DataFrame({"text": [f"text {i}" for i in range(400)], "label": labels}).to_parquet(path)
    names, splits = prepared(tmp_path, path)
    assert names == ["common", "rare"]
    rare = {s: int((df["label"] == 1).sum()) for s, df in splits.items()}
    assert rare == {"train": 14, "validation": 2, "test": 4}  # 5% of 280, 40 and 80 rows


# ---- 7. blank means no visible character ---------------------------------------------------------
@pytest.mark.parametrize("blank", ["\u200b", "\u00a0\u200d", "\ufeff ", "\u2800"])
def test_a_text_with_no_visible_character_is_blank(tmp_path, blank):
    path = tmp_path / "a.jsonl"
    lines = [json.dumps({"text": f"t {i}", "label": "ab"[i % 2]}) for i in range(40)]
    lines.insert(5, json.dumps({"text": blank, "label": "a"}))
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"blank text.*a\.jsonl:6"):
        prepare(cfg_for(tmp_path, path))


# ---- 8. the literal label NaN, and any class of one row: the same classes under every seed --------
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_the_text_nan_is_a_class_under_every_seed(tmp_path, seed):
    path = write_csv(tmp_path / "a.csv", ["pos", "neg"] * 20 + ["NaN"])
    out = prepare(load_config(None, {"data.source": str(path), "data.prepared_dir": str(tmp_path / "p"), "seed": seed}))
    assert json.loads((out / "labels.json").read_text()) == ["NaN", "neg", "pos"]
    assert (pd.read_parquet(out / "train.parquet")["label"] == 0).sum() == 1


def test_a_json_nan_is_a_missing_label_named_by_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join([json.dumps({"text": f"t {i}", "label": "ab"[i % 2]}) for i in range(40)]
                              + ['{"text": "x", "label": NaN}']) + "\n")
    with pytest.raises(DataError, match=r"null label.*a\.jsonl:41"):
        prepare(cfg_for(tmp_path, path))


# ---- 9. JSON labels mixing numbers and strings ---------------------------------------------------
def test_json_labels_mixing_numbers_and_strings_are_one_class_per_text(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"t {i}", "label": [1, "1", 2, "2"][i % 4]}) for i in range(80)))
    names, splits = prepared(tmp_path, path)
    assert names == ["1", "2"]
    assert sum(len(df) for df in splits.values()) == 80


# ---- 11. locations and wording -------------------------------------------------------------------
def test_a_symlink_loop_as_data_file_says_so(tmp_path):
    (tmp_path / "a.csv").symlink_to(tmp_path / "b.csv")
    (tmp_path / "b.csv").symlink_to(tmp_path / "a.csv")
    with pytest.raises(DataError, match="symbolic link") as e:
        prepare(cfg_for(tmp_path, tmp_path / "a.csv"))
    assert "not found" not in str(e.value)


def test_a_fifo_as_data_file_is_not_a_regular_file(tmp_path):
    os.mkfifo(tmp_path / "a.csv")
    with pytest.raises(DataError, match="FIFO"):
        prepare(cfg_for(tmp_path, tmp_path / "a.csv"))


@pytest.mark.parametrize("header", ["text,label,label", "text,text,label"])
def test_a_duplicated_column_name_is_refused_with_the_header_line(tmp_path, header):
    path = tmp_path / "a.csv"
    path.write_text(header + "\n" + "".join(f"t {i},a,b\n" for i in range(30)))
    with pytest.raises(DataError, match=r"a\.csv:1: .*column .*twice"):
        prepare(cfg_for(tmp_path, path))


def test_a_duplicated_json_key_is_refused_with_its_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join([json.dumps({"text": f"t {i}", "label": "ab"[i % 2]}) for i in range(30)]
                              + ['{"text": "x", "label": "a", "label": "b"}']) + "\n")
    with pytest.raises(DataError, match=r"a\.jsonl:31: .*'label' twice"):
        prepare(cfg_for(tmp_path, path))


def test_no_quoting_hint_when_the_user_set_nothing_and_a_delimiter_hint_for_semicolons(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("text;label\n" + "".join(f"t {i};a\n" for i in range(30)) + "hello, world;b\n")
    with pytest.raises(DataError) as e:
        prepare(cfg_for(tmp_path, path))
    assert "other setting may read it" not in str(e.value)
    assert "';'" in str(e.value) and "a.csv" in str(e.value)


def test_a_semicolon_file_that_parses_is_told_its_delimiter(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("text;label\n" + "".join(f"t {i};{'ab'[i % 2]}\n" for i in range(30)))
    with pytest.raises(DataError, match="';'"):
        prepare(cfg_for(tmp_path, path))


def test_the_quoting_hint_only_when_the_other_setting_reads_the_file(tmp_path):
    path = tmp_path / "a.csv"  # an unclosed quote: neither setting reads line 3 (wrong field count)
    path.write_text('text,label\n"a, b",x\nc,d,e\n' + "".join(f"t {i},a\n" for i in range(30)))
    with pytest.raises(DataError) as e:
        prepare(cfg_for(tmp_path, path, quoting="csv"))
    assert "line 3" in str(e.value) and "data.quoting" not in str(e.value)
    path.write_text('text,label\n"a ""b"" c,x\n' + "".join(f"t {i},a\n" for i in range(30)))
    with pytest.raises(DataError, match=r"data\.quoting: none reads it"):
        prepare(cfg_for(tmp_path, path, quoting="csv"))


# ---- 11 (validate) and 12: no numpy warning; pair leakage shows both texts ------------------------
def test_pair_leakage_examples_show_both_texts_and_class_counts_warn_nothing(tmp_path):
    prepared_dir = tmp_path / "prepared"
    prepared_dir.mkdir()
    def pairs(split: str, n: int, labels: list[int]) -> pd.DataFrame:
        return pd.DataFrame({"text": ["A man is playing."] * n, "text_pair": [f"{split} pair {i}" for i in range(n)],
                             "label": [labels[i % len(labels)] for i in range(n)],
                             "origin": [f"{split}.tsv:{i + 2}" for i in range(n)]})
    train = pairs("train", 40, [0, 1])
    train.loc[39, "text"] = "\u200b\u00a0"  # blank to the eye: validate's blank rule says so too
    splits = {"train": train, "validation": pairs("validation", 10, [0]),
              "test": pd.concat([pairs("train", 2, [0]), pairs("test", 8, [0, 1])], ignore_index=True)}
    for name, df in splits.items():
        df.to_parquet(prepared_dir / f"{name}.parquet", index=False)
    (prepared_dir / "labels.json").write_text(json.dumps(["no", "yes"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = validate(prepared_dir, ValidationConfig(), tmp_path / "validation")
    blank = next(c for c in result["checks"] if c["split"] == "train" and c["rule"] == "no blank text")
    assert not blank["success"] and blank["examples"][0]["origin"] == "train.tsv:41"
    leak = next(c for c in result["checks"] if c["split"] == "test" and c["rule"] == "no leakage from train")
    assert not leak["success"]
    assert leak["examples"][0]["text_pair"] == "train pair 0"
    with pytest.raises(ValidationFailed) as e:
        raise_on_failure(result)
    assert "'A man is playing.' / 'train pair 0'" in str(e.value)


# ---- more of each class: a label that is a list, a read error, duplicate Parquet columns ----------
def test_a_classification_label_that_is_a_list_is_refused_with_its_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join([json.dumps({"text": f"t {i}", "label": "ab"[i % 2]}) for i in range(30)]
                              + ['{"text": "x", "label": ["a", "b"]}']) + "\n")
    with pytest.raises(DataError, match=r"a\.jsonl:31.*multilabel"):
        prepare(cfg_for(tmp_path, path))


def test_a_file_that_cannot_be_read_says_so(tmp_path):
    (tmp_path / "a.csv").symlink_to("/proc/self/mem")  # a regular file whose read fails (EIO)
    with pytest.raises(DataError, match=r"a\.csv: cannot be read"):
        prepare(cfg_for(tmp_path, tmp_path / "a.csv"))


def test_duplicate_parquet_columns_are_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [f"t {i}" for i in range(30)]
    pq.write_table(pa.table([texts, ["a", "b"] * 15, ["b", "a"] * 15], names=["text", "label", "label"]),
                   tmp_path / "a.parquet")
    with pytest.raises(DataError, match=r"a\.parquet: .*'label'.*twice"):
        prepare(cfg_for(tmp_path, tmp_path / "a.parquet"))


def test_a_repeated_header_with_spaces_is_still_a_header(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("text,label\n" + "".join(f"t {i},{'ab'[i % 2]}\n" for i in range(30)) + "text , label \n")
    with pytest.raises(DataError, match=r"a\.csv:32: .*header"):
        prepare(cfg_for(tmp_path, path))


def test_a_full_width_twin_prints_alike_and_a_decomposed_accent_is_the_same_label(tmp_path):
    with pytest.raises(DataError, match="print alike"):
        prepare(cfg_for(tmp_path, write_csv(tmp_path / "a.csv", ["1", "2"] * 20 + ["\uff11"] * 3)))
    names, _ = prepared(tmp_path, write_csv(tmp_path / "b.csv", ["caf\u00e9", "cafe\u0301", "the"] * 20))
    assert names == ["caf\u00e9", "the"]
