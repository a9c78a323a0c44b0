"""The validate stage with real Great Expectations: clean data passes, each broken rule fails on its
own (with offending rows), the Data Docs render offline, and the error message a user sees."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

import ftlab.data.validation
from ftlab.core.builtins import SPLITS
from ftlab.core.config import ValidationConfig
from ftlab.data.validation import ValidationFailed, raise_on_failure, validate
from tests.conftest import toy_reviews

LABELS = ["neg", "pos"]
REMOTE = re.compile(r"""(?:src|href)\s*=\s*["']?https?:|url\(\s*["']?https?:""", re.I)


def toy_splits(per_class: int = 40) -> dict[str, pd.DataFrame]:
    """Balanced splits with distinct texts (no duplicates, no leakage), labels as int ids."""
    out = {}
    for seed, split in enumerate(SPLITS):
        df = toy_reviews(2 * per_class, seed=seed)
        out[split] = pd.DataFrame({"text": df["text"] + f" ({split})", "label": (df["label"] == "pos").astype("int64")})
    return out


def run(tmp_path, splits: dict[str, pd.DataFrame], **thresholds) -> dict:
    prepared = tmp_path / "prepared"
    prepared.mkdir(parents=True)
    for name, df in splits.items():
        df.to_parquet(prepared / f"{name}.parquet", index=False)
    (prepared / "labels.json").write_text(json.dumps(LABELS))
    return validate(prepared, ValidationConfig(**thresholds), tmp_path / "validation")


def failed(result: dict) -> set[tuple[str, str]]:
    return {(c["split"], c["rule"]) for c in result["checks"] if not c["success"]}


def test_clean_data_passes_and_docs_render_offline(tmp_path):
    result = run(tmp_path, toy_splits())

    assert result["success"] and failed(result) == set()
    rules = {(c["split"], c["rule"]): c["expectation"] for c in result["checks"]}
    assert rules[("train", "class balance")] == "expect_column_values_to_be_between"
    assert rules[("test", "no leakage from train")] == "expect_column_sum_to_be_between"
    assert ("train", "no leakage from train") not in rules
    for split in SPLITS:
        assert {"no null text", "no blank text", "label in declared set", "text length", "duplicate texts",
                "min examples per class", "text is string", "label is integer"} <= {r for s, r in rules if s == split}
    assert json.loads((tmp_path / "validation" / "result.json").read_text()) == result

    docs = tmp_path / "validation" / "data_docs"
    pages = list(docs.rglob("*.html"))
    assert (docs / "index.html") in pages and len(pages) > 6
    for page in pages:
        assert not REMOTE.search(page.read_text()), page
    index = (docs / "index.html").read_text()
    assert index.count('<li><a href="validations/') == 6 and "FAILED" not in index
    assert not (tmp_path / "validation" / "local_site").exists()


def null_text(s):
    s["train"].loc[3, "text"] = None


def blank_text(s):
    s["train"].loc[3, "text"] = "  \t "


def label_outside_set(s):
    s["train"].loc[3, "label"] = 2


def text_too_long(s):
    s["test"].loc[3, "text"] = "word " * 1200


def too_few_of_a_class(s):
    v = s["validation"]
    s["validation"] = pd.concat([v[v.label == 0], v[v.label == 1].head(3)])


def class_imbalance(s):
    t = s["train"]
    s["train"] = pd.concat([t[t.label == 0], t[t.label == 1].head(8)])  # 40 / 8 = 5 > 4


def duplicates(s):
    s["train"].loc[[1, 2, 3, 4], "text"] = s["train"].loc[0, "text"]  # 4 of 80 repeated: 5% > 1%


def leak_into_test(s):
    s["test"].loc[[3, 5], "text"] = s["train"].loc[[0, 1], "text"].to_numpy()


def validation_leak(s):
    s["validation"].loc[3, "text"] = s["train"].loc[0, "text"]


def float_labels(s):
    s["train"]["label"] = s["train"]["label"].astype(float)


def text_not_string(s):
    s["test"]["text"] = range(1000, 1080)


def missing_label_column(s):
    s["validation"] = s["validation"][["text"]]


def numbers_as_text(s):  # a column of plain numbers, already strings (as a CSV reads them)
    s["train"]["text"] = [f"{i * 1.5:g}" if i % 4 else f"{i:,}" for i in range(1000, 1080)]


def csv_quoted_text(s):  # a TSV written with CSV quoting, read without it: he said "hi" -> "he said ""hi"""
    s["train"].loc[3, "text"] = '"he said ""hi"""'


def quote_wrapped_texts(s):  # every text wrapped in quotes (csv.QUOTE_ALL), read without CSV quoting
    s["validation"]["text"] = '"' + s["validation"]["text"] + '"'


def overlap_test_validation(s):
    s["test"].loc[3, "text"] = s["validation"].loc[0, "text"]


CASES = [  # (break the data, thresholds, the checks that must fail, an offending row index or None)
    (null_text, {}, {("train", "no null text")}, 3),
    (blank_text, {}, {("train", "no blank text"), ("train", "text length")}, 3),
    (label_outside_set, {}, {("train", "label in declared set")}, 3),
    (text_too_long, {}, {("test", "text length")}, 3),
    (too_few_of_a_class, {}, {("validation", "min examples per class")}, None),
    (class_imbalance, {"max_class_ratio": 4}, {("train", "class balance")}, None),
    (duplicates, {}, {("train", "duplicate texts")}, 1),
    (leak_into_test, {}, {("test", "no leakage from train")}, 3),
    (validation_leak, {}, {("validation", "no leakage from train")}, 3),
    (float_labels, {}, {("train", "label is integer")}, None),
    (text_not_string, {}, {("test", "text is string"), ("test", "text is not numbers")}, None),
    (missing_label_column, {}, {("validation", "label column exists")}, None),
    (numbers_as_text, {}, {("train", "text is not numbers")}, 0),
    (csv_quoted_text, {}, {("train", "no CSV-escaped quotes")}, 3),
    (quote_wrapped_texts, {}, {("validation", "quote-wrapped texts")}, 0),
    (overlap_test_validation, {}, {("test", "no overlap with validation")}, 3),
]


@pytest.mark.parametrize(("breaker", "thresholds", "expected", "row"), CASES, ids=[c[0].__name__ for c in CASES])
def test_each_rule_fails_alone(tmp_path, breaker, thresholds, expected, row):
    splits = toy_splits()
    breaker(splits)
    result = run(tmp_path, splits, **thresholds)

    assert not result["success"]
    assert failed(result) == expected
    assert json.loads((tmp_path / "validation" / "result.json").read_text()) == result
    if row is not None:
        check = next(c for c in result["checks"] if (c["split"], c["rule"]) in expected)
        assert row in [ex["row"] for ex in check["examples"]]


def test_a_few_numbers_or_quoted_texts_pass_within_their_thresholds(tmp_path):
    splits = toy_splits()
    splits["train"].loc[[1, 2], "text"] = ["42", "3.5"]  # 2 of 80 <= 10%
    splits["train"].loc[[4, 5], "text"] = ['"I\'ll be back"', '"Hasta la vista"']  # 2 of 80 <= 5%
    result = run(tmp_path, splits)
    assert result["success"], failed(result)
    assert failed(run(tmp_path / "strict", splits, max_numeric_text_fraction=0.02, max_quote_wrapped_fraction=0.02)) == {
        ("train", "text is not numbers"), ("train", "quote-wrapped texts")}


def test_failures_name_the_source_file_and_line(tmp_path):
    splits = toy_splits()
    splits["train"]["origin"] = [f"reviews.csv:{i + 2}" for i in range(len(splits["train"]))]
    blank_text(splits)
    with pytest.raises(ValidationFailed, match=r"reviews.csv:5 \(train row 3\): label 1, text '  \\t '"):
        raise_on_failure(run(tmp_path, splits))


def test_class_examples_name_the_small_class(tmp_path):
    splits = toy_splits()
    too_few_of_a_class(splits)
    check = next(c for c in run(tmp_path, splits)["checks"] if not c["success"])
    assert check["examples"] == [{"label": 1, "name": "pos", "count": 3}]
    assert check["observed"] == "1 of 2 classes unexpected"


def test_thresholds_are_inclusive(tmp_path):
    splits = toy_splits()
    duplicates(splits)  # 4 / 80 = 0.05
    leak_into_test(splits)  # 2 rows
    result = run(tmp_path, splits, max_duplicate_fraction=0.05, max_leaked_rows=2)
    assert result["success"], failed(result)


def test_raise_on_failure_names_rule_and_rows(tmp_path):
    splits = toy_splits()
    blank_text(splits)
    splits["train"].loc[5, ["text", "label"]] = ["a fine text with an unknown label", 7]
    result = run(tmp_path, splits)

    with pytest.raises(ValidationFailed) as err:
        raise_on_failure(result)
    message = str(err.value)
    assert "train: no blank text (expect_column_values_to_not_match_regex on text)" in message
    assert "row 3: label 1, text '  \\t '" in message
    assert "row 5: label 7, text 'a fine text with an unknown label'" in message
    assert message.startswith("data validation failed: 3 of")  # blank text, text length, label in set
    raise_on_failure({"success": True, "checks": [c for c in result["checks"] if c["success"]]})


def test_great_expectations_is_imported_lazily():
    assert "gx" not in vars(ftlab.data.validation) and "great_expectations" not in vars(ftlab.data.validation)


def test_a_leaked_regression_row_is_named_with_its_score(tmp_path):
    """A regression split's target is its score: the leak names it, never "label None"."""
    from ftlab.learning.tasks import TASKS

    splits = {s: df.assign(label=df["label"].astype("float32") + 0.5) for s, df in toy_splits().items()}
    splits["test"].loc[0, ["text", "label"]] = [splits["train"].loc[0, "text"], 3.25]
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    for name, df in splits.items():
        df.to_parquet(prepared / f"{name}.parquet", index=False)
    (prepared / "labels.json").write_text("[]")
    result = validate(prepared, ValidationConfig(max_leaked_rows=0), tmp_path / "validation", TASKS["regression"]())
    with pytest.raises(ValidationFailed, match=r"test: no leakage from train .*\n +row 0: score 3\.25, text") as raised:
        raise_on_failure(result)
    assert "None" not in str(raised.value)
