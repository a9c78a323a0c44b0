"""The ``validate`` stage: a Great Expectations suite that stops bad data before training.

Training learns whatever the prepared splits hold. Null or blank texts, labels outside the declared
set, a class with a handful of examples, a lopsided train set, repeated rows, or validation/test
texts that also occur in train (leakage, which inflates every score reported later) all produce a
model and a report that look fine and are wrong. This stage checks every split with real GX
expectations; each rule's pass/fail is the GX result itself, so ``result.json`` and the Data Docs
always agree. Derived columns (stripped text, "repeated", "in_train") and a per-class count frame
let GX judge the rules that are not about one raw column.

``validate`` only reports; ``raise_on_failure`` turns a failed result into the error a user sees.
Great Expectations is imported inside ``validate``: the import alone takes seconds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftlab.core.builtins import SPLITS
from ftlab.core.io import atomic_dir, write_json
from ftlab.data import datadocs
from ftlab.data.labels import INVISIBLE
from ftlab.learning.config import default_task

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.expectations import Expectation

    from ftlab.core.config import ValidationConfig
    from ftlab.learning.tasks import Task

INT_TYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
FLOAT_TYPES = ["float16", "float32", "float64"]
FLAG_COLUMNS = ("repeated", "in_train", "in_validation")  # boolean derived columns checked by an aggregate
TARGETS = ("label", "score", "response", "label_count")  # a row's target, by task (Task.validation_targets)
# a text that is a plain number (12, -3.5, 1e6, 1,000, 40%): a text column of them is a wrong column
NUMBER = r"^\s*[-+]?(?:\d[\d,_]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?%?\s*$"
# a whole text in double quotes, inner quotes doubled: a CSV field read without CSV quoting
QUOTE_WRAPPED = r'(?s)^"(?:[^"]|"")*"$'
ESCAPED_QUOTES = r'(?s)^"(?:[^"]|"")*""(?:[^"]|"")*"$'  # ... with at least one doubled quote inside


class ValidationFailed(Exception):
    """Prepared data that breaks at least one expectation; the message lists them."""


def validate(prepared_dir: Path, cfg: ValidationConfig, out_dir: Path, task: Task | None = None) -> dict:
    """Check the prepared splits of ``task`` (None: the default task); write ``out_dir/result.json``
    and ``out_dir/data_docs/``. The task says what its targets are (:meth:`Task.validation_targets`).

    Returns ``{"success": bool, "checks": [...]}``, one check per rule and split, failing or not.
    """
    import pandas as pd

    task = task or default_task()
    prepared_dir, out_dir = Path(prepared_dir), Path(out_dir)
    labels = json.loads((prepared_dir / "labels.json").read_text(encoding="utf-8"))
    splits = {s: pd.read_parquet(prepared_dir / f"{s}.parquet") for s in SPLITS}
    train_texts = set(_example_key(splits["train"]).dropna()) if "text" in splits["train"] else set()
    validation_texts = set(_example_key(splits["validation"]).dropna()) if "text" in splits["validation"] else set()

    with atomic_dir(out_dir) as tmp:
        context, run_id = datadocs.context(tmp / "data_docs")
        source = context.data_sources.add_pandas("prepared")
        checks, passed = [], {}
        for split, df in splits.items():
            targets, classes = task.validation_targets(df.pop("label")) if "label" in df else ({}, None)
            rows = _row_frame(df, train_texts if split != "train" else None,
                              validation_texts if split == "test" else None).assign(**targets)
            frames = {split: rows}
            if classes is not None:
                frames[f"{split}_class_counts"] = _class_frame(classes, labels)
            for name, frame in frames.items():
                suite = context.suites.add(_suite(name, split, frame, cfg, len(labels), next(iter(targets), "label"),
                                                   task.balanced_classes))
                batch = (
                    source.add_dataframe_asset(name)
                    .add_batch_definition_whole_dataframe("all")
                    .get_batch(batch_parameters={"dataframe": frame})
                )
                suite_result = batch.validate(suite, result_format="SUMMARY")
                datadocs.store(context, suite_result, run_id, batch.id, name)
                passed[name] = bool(suite_result.success)
                order = {e.id: i for i, e in enumerate(suite.expectations)}  # GX returns another order
                for r in sorted(suite_result.results, key=lambda r: order[r.expectation_config.id]):
                    checks.append(_check(split, r, frame))
        result = {"success": all(passed.values()), "checks": checks}
        write_json(tmp / "result.json", result)
        context.build_data_docs(site_names=[datadocs.SITE])
        datadocs.make_offline(tmp / "data_docs", passed)
    return result


def raise_on_failure(result: dict) -> None:
    """Raise ValidationFailed listing every failed check and a few offending rows."""
    failed = [c for c in result["checks"] if not c["success"]]
    if not failed:
        return
    lines = [f"data validation failed: {len(failed)} of {len(result['checks'])} checks"]
    for c in failed:
        lines.append(f"  {c['split']}: {c['rule']} ({c['expectation']} on {c['column']}): observed {c['observed']}")
        for ex in c["examples"][:3]:
            if "row" in ex:  # where the user can find it: file and line; else the prepared split's row
                where = f"{ex['origin']} ({c['split']} row {ex['row']})" if ex.get("origin") else f"row {ex['row']}"
            else:
                where = f"label {ex['label']} ({ex['name']})"
            what = f"{_target(ex)}, {_texts(ex)}" if "row" in ex else f"{ex['count']} rows"
            lines.append(f"      {where}: {what}")
    raise ValidationFailed("\n".join(lines))


def _target(example: dict) -> str:
    """An offending row's target as the task names it: ``label 'pos'``, ``score 3.5``, ..."""
    name = next((t for t in TARGETS if t in example), "label")
    return f"{name} {example.get(name)!r}"


def _texts(example: dict) -> str:
    """An offending row's text, or both texts of a pair."""
    if "text_pair" in example:
        return f"texts {example['text']!r} / {example['text_pair']!r}"
    return f"text {example['text']!r}"


def _example_key(df: pd.DataFrame) -> pd.Series:
    """What makes an example the same example: its text, or both texts of a pair (in STS-B or NLI
    one premise comes with several hypotheses, which is no duplicate and no leak)."""
    return df["text"] if "text_pair" not in df else df["text"] + "\x1f" + df["text_pair"]


def _row_frame(df: pd.DataFrame, train_texts: set[str] | None, validation_texts: set[str] | None = None) -> pd.DataFrame:
    """Text, label and origin (source file and line) plus derived columns: stripped text, repeated
    example, and in_train (validation, test) and in_validation (test) for leakage between splits."""
    rows = df[[c for c in ("text", "text_pair", "label", "origin") if c in df]].copy()
    if "text" in rows:
        text, key = rows["text"], _example_key(df)
        edges = re.compile(f"^{INVISIBLE}+|{INVISIBLE}+$")  # what shows: no spaces, zero-width characters, ...
        rows["text_stripped"] = text.map(lambda v: edges.sub("", v) if isinstance(v, str) else None)
        rows["repeated"] = key.duplicated(keep="first") & key.notna()
        if train_texts is not None:
            rows["in_train"] = key.isin(train_texts)
        if validation_texts is not None:
            rows["in_validation"] = key.isin(validation_texts)
    return rows


def _class_frame(label: pd.Series, labels: list[str]) -> pd.DataFrame:
    """One row per declared label id: its name, row count, and largest class count / its count."""
    import numpy as np
    import pandas as pd

    counts = label.value_counts().reindex(range(len(labels)), fill_value=0).astype(int).to_numpy()
    ratio = np.divide(counts.max(), counts, out=np.full(len(counts), np.inf), where=counts > 0)  # inf: no rows
    return pd.DataFrame({"label": range(len(labels)), "name": labels, "count": counts, "largest_over_count": ratio})


def _suite(name: str, split: str, frame: pd.DataFrame, cfg: ValidationConfig, n_labels: int, target: str,
           balance: bool) -> Any:
    """The expectations that apply to this frame, each tagged with its rule name in ``meta``; class
    balance where the task asks for it (``Task.balanced_classes``)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    if name.endswith("_class_counts"):
        rules: list[tuple[str, Expectation]] = [("min examples per class", gxe.ExpectColumnValuesToBeBetween(
            column="count", min_value=cfg.min_examples_per_class))]
        if split == "train" and balance:
            rules.append(("class balance", gxe.ExpectColumnValuesToBeBetween(
                column="largest_over_count", max_value=cfg.max_class_ratio)))
    else:
        rules = [("text column exists", gxe.ExpectColumnToExist(column="text")),
                 ("label column exists", gxe.ExpectColumnToExist(column=target))]
        if "text" in frame:
            rules += [
                ("text is string", gxe.ExpectColumnValuesToBeOfType(column="text", type_="str")),
                ("no null text", gxe.ExpectColumnValuesToNotBeNull(column="text")),
                ("no blank text", gxe.ExpectColumnValuesToNotMatchRegex(column="text", regex=f"^{INVISIBLE}*$")),
                ("text is not numbers", gxe.ExpectColumnValuesToNotMatchRegex(
                    column="text", regex=NUMBER, mostly=1 - cfg.max_numeric_text_fraction)),
                ("no CSV-escaped quotes", gxe.ExpectColumnValuesToNotMatchRegex(column="text", regex=ESCAPED_QUOTES)),
                ("quote-wrapped texts", gxe.ExpectColumnValuesToNotMatchRegex(
                    column="text", regex=QUOTE_WRAPPED, mostly=1 - cfg.max_quote_wrapped_fraction)),
                ("text length", gxe.ExpectColumnValueLengthsToBeBetween(
                    column="text_stripped", min_value=cfg.min_text_chars, max_value=cfg.max_text_chars)),
                ("duplicate texts", gxe.ExpectColumnMeanToBeBetween(
                    column="repeated", max_value=cfg.max_duplicate_fraction)),
            ]
        if "in_train" in frame:
            rules.append(("no leakage from train", gxe.ExpectColumnSumToBeBetween(
                column="in_train", max_value=cfg.max_leaked_rows)))
        if "in_validation" in frame:
            rules.append(("no overlap with validation", gxe.ExpectColumnSumToBeBetween(
                column="in_validation", max_value=cfg.max_leaked_rows)))
        if "label" in frame:
            rules += [
                ("label is integer", gxe.ExpectColumnValuesToBeInTypeList(column="label", type_list=INT_TYPES)),
                ("label in declared set", gxe.ExpectColumnValuesToBeInSet(
                    column="label", value_set=list(range(n_labels)))),
            ]
        if "response" in frame:
            rules += [("no null response", gxe.ExpectColumnValuesToNotBeNull(column="response")),
                      ("no blank response", gxe.ExpectColumnValuesToNotMatchRegex(column="response", regex=r"^\s*$"))]
        if "score" in frame:
            rules += [("score is a number", gxe.ExpectColumnValuesToBeInTypeList(column="score", type_list=FLOAT_TYPES)),
                      ("no null score", gxe.ExpectColumnValuesToNotBeNull(column="score"))]
    suite = gx.ExpectationSuite(name=name)
    for rule, expectation in rules:
        expectation.meta = {"rule": rule}
        suite.add_expectation(expectation)
    return suite


def _check(split: str, r: Any, frame: pd.DataFrame) -> dict:
    """One GX expectation result as a plain, JSON-ready check."""
    config, res = r.expectation_config, r.result
    column = config.kwargs.get("column")
    if r.exception_info and r.exception_info.get("raised_exception"):
        observed: Any = f"error: {r.exception_info.get('exception_message')}"
    elif "observed_value" in res:
        observed = _plain(res["observed_value"])
    elif "unexpected_count" in res:
        unit = "classes" if "count" in frame else "rows"
        observed = f"{res['unexpected_count']} of {res['element_count']} {unit} unexpected"
    else:
        observed = "present" if r.success else "missing"
    index = res.get("partial_unexpected_index_list") or []
    if not index and column in FLAG_COLUMNS and column in frame:
        index = list(frame.index[frame[column]])
    examples = [_example(frame, i) for i in index[:5]] if not r.success else []
    return {"split": split, "expectation": config.type, "column": column, "rule": config.meta["rule"],
            "success": bool(r.success), "observed": observed, "examples": examples}


def _example(frame: pd.DataFrame, i: Any) -> dict:
    """An offending row: index, start of its text and its label; or a class and its count."""
    import pandas as pd

    row = frame.loc[i]
    if "count" in frame:
        return {"label": _plain(row["label"]), "name": row["name"], "count": _plain(row["count"])}
    text = row.get("text")
    target = next((t for t in TARGETS if t in frame), "label")
    value = _plain(row.get(target))
    example = {"row": _plain(i), "text": None if pd.isna(text) else str(text)[:80],
               target: value[:80] if isinstance(value, str) else value}
    if "text_pair" in frame:  # a pair is both its texts: the first alone recurs in many pairs
        pair = row.get("text_pair")
        example["text_pair"] = None if pd.isna(pair) else str(pair)[:80]
    if isinstance(row.get("origin"), str):
        example["origin"] = row["origin"]
    return example


def _plain(value: Any) -> Any:
    """A JSON-ready scalar: numpy types unwrapped, floats rounded, NaN as None."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float):
        return None if value != value else round(value, 4)
    return value if isinstance(value, (bool, int, str, type(None))) else str(value)
