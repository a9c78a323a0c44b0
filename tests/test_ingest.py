"""``ftlab ingest`` as strict as training (issue 37): one ingest at a time, every batch that prepare
would take for another dataset refused or accepted by an explicit flag, killed ingests recovered.
No training: a small pos/neg source CSV and real files, real processes, a real DVC project."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from ftlab import stages
from ftlab.data.batches import batch_dirs
from ftlab.data.ingest import Answers, ingest
from ftlab.data.prepare import DataError, prepare
from ftlab.learning.config import load_config

SOURCE = [(f"row {i} was {'good' if i % 2 else 'bad'}", "pos" if i % 2 else "neg") for i in range(12)]


def csv_text(rows, newline: str = "\n") -> str:
    return newline.join(["text,label", *(f"{t},{label}" for t, label in rows)]) + newline


def project(root: Path, newline: str = "\n"):
    root.mkdir(parents=True, exist_ok=True)
    (root / "source.csv").write_bytes(csv_text(SOURCE, newline).encode())
    return load_config(None, {"data.source": str(root / "source.csv"), "data.batches_dir": str(root / "batches"),
                              "data.prepared_dir": str(root / "prepared")})


def stored(cfg, number: int = 1) -> pd.DataFrame:
    (batch,) = [b for b in batch_dirs(cfg.data.batches_dir) if b.name.startswith(f"{number:04d}-")]
    return pd.read_parquet(batch / "rows.parquet")


def info(cfg, number: int = 1) -> dict:
    (batch,) = [b for b in batch_dirs(cfg.data.batches_dir) if b.name.startswith(f"{number:04d}-")]
    return json.loads((batch / "batch.json").read_text())


CHILD = """
import pathlib, sys, time
import pandas as pd
write = pd.DataFrame.to_parquet
def slow(self, *args, **kwargs):  # widen the window between numbering the batch and renaming it
    time.sleep(1.0)
    return write(self, *args, **kwargs)
pd.DataFrame.to_parquet = slow
pathlib.Path(sys.argv[1]).touch()
while not pathlib.Path(sys.argv[2]).exists():
    time.sleep(0.01)
from ftlab.cli import app
app(sys.argv[3:])
"""


def test_two_ingests_at_once_keep_both_batches_or_refuse_one(tmp_path):
    """Four real `ftlab ingest` processes started together into two batch directories: with different
    names both batches are kept, numbered 1 and 2; with the same default name one is refused and the
    kept batch holds its own file's rows."""
    runs = []
    for pair, names in (("same", (None, None)), ("different", ("A", "B"))):
        cfg = project(tmp_path / pair)
        for side, name in zip("xy", names, strict=True):
            (tmp_path / pair / side).mkdir()
            (tmp_path / pair / side / "new.csv").write_text(csv_text([(f"{side} text {i}", "pos") for i in range(4)]))
            args = ["ingest", str(tmp_path / pair / side / "new.csv"), *(["--name", name] if name else []),
                    "-S", f"data.source={cfg.data.source}", "-S", f"data.batches_dir={cfg.data.batches_dir}"]
            ready = tmp_path / f"{pair}-{side}.ready"
            runs.append((pair, side, ready, subprocess.Popen([sys.executable, "-c", CHILD, str(ready), str(tmp_path / "go"), *args],
                                                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    deadline = time.monotonic() + 60
    while not all(ready.exists() for _, _, ready, _ in runs) and time.monotonic() < deadline:
        time.sleep(0.05)
    (tmp_path / "go").touch()
    done = {(pair, side): (p.wait(timeout=120), p.stdout.read()) for pair, side, _, p in runs}  # type: ignore[union-attr]

    different = sorted(p.name for p in (tmp_path / "different/batches").iterdir())
    assert different == ["0001-A", "0002-B"] or different == ["0001-B", "0002-A"], (different, done)
    codes = sorted(code for (pair, _), (code, _) in done.items() if pair == "same")
    assert codes == [0, 1], done
    loser = next(out for (pair, _), (code, out) in done.items() if pair == "same" and code == 1)
    assert "a batch of that name exists" in loser
    winner = next(side for (pair, side), (code, _) in done.items() if pair == "same" and code == 0)
    (kept,) = (tmp_path / "same/batches").iterdir()
    assert kept.name == "0001-new"
    assert pd.read_parquet(kept / "rows.parquet")["text"].tolist() == [f"{winner} text {i}" for i in range(4)]


def test_a_new_class_is_refused_unless_accepted_and_then_recorded(tmp_path):
    cfg = project(tmp_path)
    (tmp_path / "new.csv").write_text(csv_text([("fine i guess", "neutral"), ("lovely", "pos")]))
    with pytest.raises(DataError, match=r"new\.csv: label\(s\) \['neutral'\] are neither the classes trained on "
                                        r"\['neg', 'pos'\].*--new-labels"):
        stages.ingest(cfg, tmp_path / "new.csv")
    assert batch_dirs(cfg.data.batches_dir) == []
    got = stages.ingest(cfg, tmp_path / "new.csv", answers=Answers(new_labels=True))
    assert got["new_labels"] == ["neutral"] and info(cfg)["new_labels"] == ["neutral"]
    assert any("trains on 3 classes, not 2" in note for note in got["notes"])
    prepare(cfg)
    assert json.loads((cfg.data.prepared_dir / "labels.json").read_text()) == ["neg", "neutral", "pos"]


def test_prepare_refuses_a_new_class_no_ingest_accepted_and_reads_label_ids_as_names(tmp_path):
    """Batches written by an earlier ftlab (labels as the file had them): ids 0/1 become the source's
    names; a class no batch.json accepted is refused, naming the batch."""
    cfg = project(tmp_path)
    for number, labels in ((1, ["0", "1"]), (2, ["neutral", "pos"])):
        batch = cfg.data.batches_dir / f"000{number}-old{number}"
        batch.mkdir(parents=True)
        pd.DataFrame({"text": [f"old {number} a", f"old {number} b"], "label": labels}).to_parquet(batch / "rows.parquet")
        (batch / "batch.json").write_text(json.dumps({"name": f"old{number}", "sha256": str(number), "labelled": True}))
    with pytest.raises(DataError, match=r"batch 'old2' \(.*0002-old2\): label\(s\) \['neutral'\]"):
        prepare(cfg)
    (cfg.data.batches_dir / "0002-old2/batch.json").write_text(json.dumps({"name": "old2", "sha256": "2", "labelled": True,
                                                                            "new_labels": ["neutral"]}))
    out = prepare(cfg)
    names = json.loads((out / "labels.json").read_text())
    assert names == ["neg", "neutral", "pos"]
    rows = pd.concat([pd.read_parquet(out / f"{s}.parquet") for s in ("train", "validation", "test")])
    assert {t: names[i] for t, i in zip(rows["text"], rows["label"], strict=True) if t.startswith("old 1")} == {
        "old 1 a": "neg", "old 1 b": "pos"}


def test_label_ids_are_stored_as_the_class_names(tmp_path):
    """The nightly loop's file of 0/1 labels: stored as neg/pos, so prepare trains on two classes."""
    cfg = project(tmp_path)
    (tmp_path / "ids.csv").write_text(csv_text([("a new bad one", "0"), ("a new good one", "1")]))
    got = stages.ingest(cfg, tmp_path / "ids.csv")
    assert got["label_ids"] == {"0": "neg", "1": "pos"} and "0 = neg, 1 = pos" in got["notes"][0]
    assert stored(cfg)["label"].tolist() == ["neg", "pos"]
    prepare(cfg)
    assert json.loads((cfg.data.prepared_dir / "labels.json").read_text()) == ["neg", "pos"]


def test_the_same_rows_saved_with_other_line_ends_are_duplicates(tmp_path):
    """The source saved with CRLF, the batch its rows with LF and one new row: other bytes, same rows."""
    cfg = project(tmp_path, newline="\r\n")
    (tmp_path / "again.csv").write_text(csv_text([*SOURCE[:3], ("a truly new row", "pos")]))
    with pytest.raises(DataError, match=r"again\.csv: 3 of 4 row\(s\) repeat rows of data\.source \(3\), e\.g\. "
                                        r".*again\.csv:2.*--duplicates drop.*--duplicates keep"):
        stages.ingest(cfg, tmp_path / "again.csv")
    got = stages.ingest(cfg, tmp_path / "again.csv", answers=Answers(duplicates="drop"))
    assert got["rows"] == 1 and got["duplicates"] == {"rows": 3, "of": {"data.source": 3}, "action": "dropped"}
    assert stored(cfg)["text"].tolist() == ["a truly new row"]
    (tmp_path / "again2.csv").write_text(csv_text([("a truly new row", "pos"), SOURCE[5]], "\r\n"))
    got = stages.ingest(cfg, tmp_path / "again2.csv", answers=Answers(duplicates="keep"))
    assert got["duplicates"]["of"] == {"again": 1, "data.source": 1} or got["duplicates"]["of"] == {"data.source": 1, "again": 1}
    assert got["rows"] == 2 and info(cfg, 2)["duplicates"]["action"] == "kept"


def test_a_partly_labelled_jsonl_is_refused_naming_the_lines(tmp_path):
    cfg = project(tmp_path)
    lines = [{"text": "first, unlabelled"}] + [{"text": f"labelled {i}", "label": "pos" if i % 2 else "neg"} for i in range(19)]
    (tmp_path / "part.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.raises(DataError, match=r"part\.jsonl: 1 of 20 row\(s\) have no label \(column 'label'\), e\.g\. "
                                        r".*part\.jsonl:1: .*--unlabelled-rows drop"):
        stages.ingest(cfg, tmp_path / "part.jsonl")
    got = stages.ingest(cfg, tmp_path / "part.jsonl", answers=Answers(unlabelled_rows="drop"))
    assert got["labelled"] and got["rows"] == 19 and got["unlabelled_rows"] == {"rows": 1, "action": "dropped"}
    assert stored(cfg)["label"].tolist() == [x["label"] for x in lines[1:]]


def test_a_leading_apostrophe_is_a_spreadsheet_text_marker(tmp_path, caplog):
    rows = [(f"text {i}", ("'" if i % 3 == 0 else "") + ("pos" if i % 2 else "neg")) for i in range(12)]
    (tmp_path / "marked.csv").write_text(csv_text(rows))
    cfg = load_config(None, {"data.source": str(tmp_path / "marked.csv"), "data.prepared_dir": str(tmp_path / "prepared"),
                             "data.batches_dir": str(tmp_path / "batches")})
    with caplog.at_level(logging.WARNING, logger="ftlab.data.labels"):
        prepare(cfg)
    assert json.loads((tmp_path / "prepared/labels.json").read_text()) == ["neg", "pos"]
    assert "a leading apostrophe, a spreadsheet's text marker, removed" in caplog.text
    (tmp_path / "batch.csv").write_text(csv_text([("another", "'pos"), ("and another", "neg")]))
    stages.ingest(cfg, tmp_path / "batch.csv")
    assert stored(cfg)["label"].tolist() == ["pos", "neg"]


def test_a_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path):
    cfg = project(tmp_path)
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    result: list[BaseException | None] = []

    def run() -> None:
        try:
            stages.ingest(cfg, fifo)
            result.append(None)
        except BaseException as e:  # handed to the test thread
            result.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=30)
    if thread.is_alive():  # blocked opening the FIFO: let it go before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("ftlab ingest waited on a named pipe")
    assert isinstance(result[0], DataError) and "a FIFO (named pipe), not a data file" in str(result[0])


def test_a_killed_ingest_leaves_nothing_prepare_reads_and_is_recovered(tmp_path):
    """What SIGKILL leaves: a temporary directory already holding batch.json (its process gone), and a
    batch renamed into place whose `dvc add` never ran. Prepare reads neither temporary directory; the
    next ingest removes it and versions the batch."""
    from dvc.repo import Repo

    cfg = project(tmp_path)
    Repo.init(str(tmp_path), no_scm=True).close()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / "first.csv").write_text(csv_text([("first batch row", "pos"), ("first bad row", "neg")]))
    ingest(tmp_path / "first.csv", cfg.task_type(), cfg.data, cfg.seed)  # renamed, not dvc add-ed
    stale = cfg.data.batches_dir / f".0002-killed.tmp-{gone.pid}"
    stale.mkdir()
    pd.DataFrame({"text": ["half written"], "label": ["pos"]}).to_parquet(stale / "rows.parquet")
    (stale / "batch.json").write_text(json.dumps({"name": "killed", "sha256": "x", "labelled": True}))
    prepare(cfg)
    assert set(json.loads((cfg.data.prepared_dir / "meta.json").read_text())["slices"]["train"]) == {"source", "first"}

    with pytest.raises(DataError, match="already ingested"):
        stages.ingest(cfg, tmp_path / "first.csv")
    assert (cfg.data.batches_dir / "0001-first.dvc").is_file() and not stale.exists()


def test_names_and_label_notes_say_what_is_wrong(tmp_path, caplog):
    cfg = project(tmp_path)
    (tmp_path / "b.csv").write_text(csv_text([("some text", "pos"), ("more text", "neg")]))
    with pytest.raises(DataError, match=r"--name: 300 characters; a batch name has at most 100"):
        stages.ingest(cfg, tmp_path / "b.csv", name="n" * 300)
    with pytest.raises(DataError) as bad:
        stages.ingest(cfg, tmp_path / "b.csv", name="a b")
    assert "starting with a letter or digit" in str(bad.value) and "source" not in str(bad.value)
    with pytest.raises(DataError, match=r"--name 'source' is the slice of data\.source's rows"):
        stages.ingest(cfg, tmp_path / "b.csv", name="source")
    assert batch_dirs(cfg.data.batches_dir) == []
    long = tmp_path / ("x" * 200 + ".csv")
    long.write_text(csv_text([("from a long file name", "pos")]))
    assert len(stages.ingest(cfg, long)["name"]) == 100

    nfd_rows = [(f"text {i}", ["cafe\u0301", "caf\u00e9", "tea"][i % 3]) for i in range(12)]  # é written two ways
    (tmp_path / "nfd.csv").write_text(csv_text(nfd_rows))
    nfd = load_config(None, {"data.source": str(tmp_path / "nfd.csv"), "data.prepared_dir": str(tmp_path / "p2")})
    with caplog.at_level(logging.WARNING, logger="ftlab.data.labels"):
        prepare(nfd)
    assert json.loads((tmp_path / "p2/labels.json").read_text()) == ["caf\u00e9", "tea"]
    note = next(r.getMessage() for r in caplog.records if "read as" in r.getMessage())
    assert "composed to Unicode NFC" in note and "whitespace" not in note
