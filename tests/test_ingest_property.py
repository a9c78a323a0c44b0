"""What ingest stores and prepare trains on is exactly what the user was told (issue 37).

Random batch files, CSV or JSON Lines, in UTF-8, UTF-8 with a byte-order mark or Latin-1, with LF or
CRLF line ends, whose labels are the classes' names written with a spreadsheet's apostrophe,
surrounding spaces, decomposed accents or another case, or their ids 0..k-1 (as text or JSON
numbers), some rows without a label, some of a new class, some repeating rows of the source or of an
earlier batch; ingested with random answers (--new-labels, --duplicates, --unlabelled-rows). An
oracle written from the README's rules says what must happen: a refusal for the first reason that
applies, or the rows kept. Each example checks the DataError's reason, or that the stored rows and
their labels are the oracle's, that every change was said in the returned notes and ``batch.json``,
and that prepare trains on exactly those rows with exactly those classes.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
import unicodedata
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings, strategies as st

from ftlab import stages
from ftlab.data.batches import batch_dirs
from ftlab.data.ingest import Answers
from ftlab.data.labels import order_key
from ftlab.data.prepare import DataError, prepare
from ftlab.learning.config import load_config

CLASSES = ["café", "neg", "pos"]  # label order: the ids 0, 1, 2
SOURCE = [(f"source row {i}", CLASSES[i % 3]) for i in range(12)]
EARLY = [(f"early row {i}", CLASSES[(i + 1) % 3]) for i in range(3)]
FORMS = ["name", "apostrophe", "spaces", "nfd", "case", "new"]


@st.composite
def batches(draw) -> dict:
    """One batch file's rows (text, class, how its label is written) and how the file is written."""
    ids = draw(st.booleans())  # every label written as its id (a file of label ids), else as a name
    rows = []
    for i in range(draw(st.integers(2, 8))):
        origin = draw(st.sampled_from(["new", "new", "source", "early"]))
        text, label = {"new": (f"new row {i}", draw(st.sampled_from(CLASSES))),
                       "source": draw(st.sampled_from(SOURCE)), "early": draw(st.sampled_from(EARLY))}[origin]
        form = "id" if ids else draw(st.sampled_from(FORMS))
        rows.append((text, label, draw(st.sampled_from([form] * 4 + ["missing"]))))
    if all(form == "missing" for _, _, form in rows):
        rows[0] = (rows[0][0], rows[0][1], "id" if ids else "name")
    return {"rows": rows, "format": draw(st.sampled_from(["csv", "jsonl"])),
            "encoding": draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1"])), "newline": draw(st.sampled_from(["\n", "\r\n"])),
            "numbers": draw(st.booleans()), "answers": Answers(draw(st.booleans()), draw(st.sampled_from(["refuse", "drop", "keep"])),
                                                                  draw(st.sampled_from(["refuse", "drop"])))}


def written(label: str, form: str, numbers: bool) -> str | int | None:
    """The label as the file holds it."""
    return {"name": label, "apostrophe": f"'{label}", "spaces": f"  {label} ", "nfd": unicodedata.normalize("NFD", label),
            "case": label.upper(), "new": "neutral", "missing": None,
            "id": CLASSES.index(label) if numbers else str(CLASSES.index(label))}[form]


def write(batch: dict, path: Path) -> Path:
    rows = [(text, written(label, form, batch["numbers"])) for text, label, form in batch["rows"]]
    if batch["format"] == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator=batch["newline"])
        writer.writerows([("text", "label"), *((t, "" if x is None else x) for t, x in rows)])
        text = out.getvalue()
    else:
        text = "".join(json.dumps({"text": t, **({} if x is None else {"label": x})}, ensure_ascii=False) + batch["newline"]
                       for t, x in rows)
    path = path.with_suffix(f".{batch['format']}")
    path.write_bytes(text.encode(batch["encoding"]))
    return path


def oracle(batch: dict) -> tuple[str, list[tuple[str, str]], list[str]]:
    """("refused", [], [reason]) or ("kept", rows (text, class), the notes' subjects), by the README's
    rules, in the order ingest applies them."""
    answers, rows = batch["answers"], batch["rows"]
    text = "".join(t + str(written(x, f, False)) for t, x, f in rows)
    if batch["encoding"] == "latin-1" and not text.isascii():
        return "refused", [], ["not valid UTF-8"]
    told = []
    if any(form == "missing" for _, _, form in rows):
        if answers.unlabelled_rows != "drop":
            return "refused", [], ["have no label"]
        rows, told = [r for r in rows if r[2] != "missing"], ["dropped (--unlabelled-rows drop)"]

    def cls(label: str, form: str) -> str:
        return {"case": label.upper(), "new": "neutral"}.get(form, label)

    kept = [(t, cls(x, f)) for t, x, f in rows]
    new = sorted({x for _, x in kept} - set(CLASSES), key=order_key)
    if new and not answers.new_labels:
        return "refused", [], ["are neither the classes trained on"]
    told += ["labels read as label ids"] if rows[0][2] == "id" else []
    told += [f"new class(es) {new} added"] if new else []
    repeats = [(t, x) in {*SOURCE, *EARLY} for t, x in kept]
    if any(repeats):
        if answers.duplicates == "refuse":
            return "refused", [], ["repeat rows of"]
        if answers.duplicates == "drop" and all(repeats):
            return "refused", [], ["no new row to ingest"]
        told += [f"{sum(repeats)} of {len(kept)} row(s) repeat rows of"]
        kept = [r for r, again in zip(kept, repeats, strict=True) if not again or answers.duplicates == "keep"]
    return "kept", kept, told


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(batch=batches())
def test_what_ingest_keeps_and_prepare_trains_on_is_what_the_user_was_told(batch):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "source.csv").write_text("text,label\n" + "".join(f"{t},{x}\n" for t, x in SOURCE), encoding="utf-8")
        (root / "early.csv").write_text("text,label\n" + "".join(f"{t},{x}\n" for t, x in EARLY), encoding="utf-8")
        cfg = load_config(None, {"data.source": str(root / "source.csv"), "data.batches_dir": str(root / "batches"),
                                 "data.prepared_dir": str(root / "prepared")})
        stages.ingest(cfg, root / "early.csv")
        verdict, rows, told = oracle(batch)
        info = _ingest(cfg, batch, root)
        if verdict == "refused":
            assert isinstance(info, DataError) and told[0] in str(info), (batch, info)
            assert [b.name for b in batch_dirs(cfg.data.batches_dir)] == ["0001-early"]
            return
        assert not isinstance(info, DataError), (batch, info)
        assert len(info["notes"]) == len(told) and all(t in n for t, n in zip(told, info["notes"], strict=True)), (told, info["notes"])
        assert json.loads((Path(info["dir"]) / "batch.json").read_text())["notes"] == info["notes"]
        stored = pd.read_parquet(Path(info["dir"]) / "rows.parquet")
        assert list(zip(stored["text"], stored["label"], strict=True)) == rows and info["rows"] == len(rows)
        out = prepare(cfg)
        names = json.loads((out / "labels.json").read_text())
        assert names == sorted(set(CLASSES) | {x for _, x in rows}, key=order_key)
        prepared = pd.concat([pd.read_parquet(out / f"{s}.parquet") for s in ("train", "validation", "test")])
        trained = prepared[prepared["slice"] == "new"]
        assert sorted((t, names[i]) for t, i in zip(trained["text"], trained["label"], strict=True)) == sorted(rows)


def _ingest(cfg, batch: dict, root: Path) -> dict | DataError:
    try:
        return stages.ingest(cfg, write(batch, root / "new"), answers=batch["answers"])
    except DataError as e:
        return e
