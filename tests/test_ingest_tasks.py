"""``ftlab ingest`` for every task the product trains (issue 34): text pairs (RTE classes, STS-B
scores), label lists (GoEmotions), token tags (CoNLL-2003, as CoNLL columns and as JSON Lines) and
causal-LM prompts with answers. Each batch is read with the training readers, refused by file and
line for what training refuses (and for labels never trained on, unless --new-labels), leaves
nothing behind when refused, and joins the prepared train split at the next prepare with its
values intact. Small real rows from ../shared/data, copied into tmp_path; no model is trained."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ftlab import stages
from ftlab.core.builtins import SPLITS
from ftlab.data.batches import batch_dirs
from ftlab.data.ingest import Answers
from ftlab.learning.config import load_config
from ftlab.learning.tasks import DataError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PAIRS = {"text_column": "sentence1", "text_pair_column": "sentence2"}
EMOTIONS = {"neutral", "gratitude", "admiration", "approval"}


@pytest.fixture(autouse=True)
def in_project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a project of its own, not this repository's dvc.yaml


def project(tmp_path: Path, task: dict, source: str, **more: object):
    return load_config(None, {"task": task, "data.source": source, "data.batches_dir": str(tmp_path / "batches"),
                              "data.prepared_dir": str(tmp_path / "prepared"), **more})


def tsv(path: Path, header: str, lines: list[str]) -> Path:
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def shared_lines(name: str, keep=lambda fields: True) -> tuple[str, list[str]]:
    """A shared TSV's header and its data lines that ``keep`` accepts (by their tab-separated fields)."""
    header, *lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return header, [line for line in lines if keep(line.split("\t"))]


def prepared_batch_rows(cfg, split: str = "train") -> tuple[pd.DataFrame, list[str]]:
    """The batch's rows in a prepared split (after prepare), and the label names."""
    stages.prepare(cfg)
    df = pd.read_parquet(cfg.data.prepared_dir / f"{split}.parquet")
    names = json.loads((cfg.data.prepared_dir / "labels.json").read_text())
    return df[df["slice"] == "new"].reset_index(drop=True), names


def refused(cfg, path: Path, match: str, answers: Answers = Answers()) -> None:
    """``path`` refused with ``match``; nothing kept: no batch, no temporary directory."""
    with pytest.raises(DataError, match=match):
        stages.ingest(cfg, path, answers=answers)
    assert not cfg.data.batches_dir.exists() or list(cfg.data.batches_dir.iterdir()) == []


@pytest.mark.parametrize(("name", "task"), [
    ("rte", {"type": "classification", **PAIRS}),
    ("stsb", {"type": "regression", **PAIRS, "label_column": "score"}),
])
def test_pairs_join_training_with_both_texts_and_their_target(tmp_path, name, task):
    header, lines = shared_lines(f"{name}/train.tsv", lambda f: len(f[0]) < 200)
    cfg = project(tmp_path, task, str(tsv(tmp_path / "source.tsv", header, lines[:40])))
    batch = list(dict.fromkeys(lines[40:]))[:10]  # STS-B repeats a few pairs
    new = tsv(tmp_path / "new.tsv", header, batch)
    info = stages.ingest(cfg, new)
    assert info["rows"] == 10 and info["labelled"]

    rows, names = prepared_batch_rows(cfg)
    expected = {(a, b): (number, y) for number, (a, b, y) in enumerate((line.split("\t") for line in batch), 2)}
    assert len(rows) >= 5
    for row in rows.itertuples():
        number, target = expected[row.text, row.text_pair]
        assert row.origin == f"{new}:{number}"
        if name == "rte":
            assert names[row.label] == target
        else:
            assert row.label == pytest.approx(float(target))


def test_a_score_that_is_not_a_number_is_refused_by_line(tmp_path):
    header, lines = shared_lines("stsb/train.tsv")
    cfg = project(tmp_path, {"type": "regression", **PAIRS, "label_column": "score"},
                  str(tsv(tmp_path / "source.tsv", header, lines[:30])))
    a, b, _ = lines[30].split("\t")
    new = tsv(tmp_path / "new.tsv", header, [lines[31], f"{a}\t{b}\tvery similar", lines[32]])
    refused(cfg, new, r"new\.tsv: 1 score\(s\) that are not finite numbers \('very similar'\) at \S*new\.tsv:3$")
    # an empty score is an unlabelled row: refused naming the flag, or dropped by it
    blank = tsv(tmp_path / "blank.tsv", header, [lines[31], f"{a}\t{b}\t", lines[32]])
    refused(cfg, blank, r"blank\.tsv: 1 of 3 row\(s\) have no label \(column 'score'\), e.g. \S*blank\.tsv:3: .*--unlabelled-rows drop")
    info = stages.ingest(cfg, blank, answers=Answers(unlabelled_rows="drop"))
    assert info["rows"] == 2 and info["unlabelled_rows"] == {"rows": 1, "action": "dropped"}
    # JSON Lines may give a score as text or as a number: both kept as numbers
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("".join(json.dumps({"sentence1": f"{a} {i}", "sentence2": b, "score": score}) + "\n"
                             for i, score in enumerate(["2.5", 4, 0.75])))
    assert stages.ingest(cfg, mixed)["rows"] == 3
    assert pd.read_parquet(cfg.data.batches_dir / "0002-mixed/rows.parquet")["label"].tolist() == [2.5, 4.0, 0.75]
    # no score column: pairs kept for monitoring, not trained on
    pairs = tsv(tmp_path / "pairs.tsv", "sentence1\tsentence2", [line.rsplit("\t", 1)[0] for line in lines[33:36]])
    assert not stages.ingest(cfg, pairs)["labelled"]
    stages.prepare(cfg)
    slices = {split: set(pd.read_parquet(cfg.data.prepared_dir / f"{split}.parquet")["slice"]) for split in SPLITS}
    assert set().union(*slices.values()) == {"source", "blank", "mixed"}


def goemotions(tmp_path: Path) -> tuple[object, str, list[str]]:
    """A multi-label project on 60 GoEmotions rows whose labels are all in EMOTIONS; the rows after them."""
    header, lines = shared_lines("goemotions/train.tsv", lambda f: set(f[1].split(",")) <= EMOTIONS)
    cfg = project(tmp_path, {"type": "multilabel", "label_column": "labels"},
                  str(tsv(tmp_path / "source.tsv", header, lines[:60])))
    return cfg, header, lines[60:]


def test_label_lists_join_training_as_their_names(tmp_path):
    cfg, header, lines = goemotions(tmp_path)
    several = [line for line in lines if "," in line.split("\t")[1]][:3]
    batch = [*several, *[line for line in lines if line not in several][:9]]
    new = tsv(tmp_path / "new.tsv", header, batch)
    assert stages.ingest(cfg, new)["rows"] == 12

    rows, names = prepared_batch_rows(cfg)
    expected = dict(line.split("\t") for line in batch)
    assert len(rows) >= 6
    for row in rows.itertuples():
        assert sorted(names[i] for i in row.label) == sorted(expected[row.text].split(","))


def test_an_unknown_label_in_a_list_is_refused_until_accepted(tmp_path):
    cfg, header, lines = goemotions(tmp_path)
    text = lines[0].split("\t")[0]
    new = tsv(tmp_path / "new.tsv", header, [*lines[1:4], f"{text}\tgratitude,remorse"])
    refused(cfg, new, r"new\.tsv: label\(s\) \['remorse'\] are not among the labels trained on \['admiration', "
                      r".*e\.g\. at \S*new\.tsv:5: .*--new-labels")
    info = stages.ingest(cfg, new, answers=Answers(new_labels=True))
    assert info["new_labels"] == ["remorse"]
    assert any("trains on 5 labels, not 4" in note for note in info["notes"])
    for seed in range(6):  # the new label's one row is trained on, whichever part of the batch it was drawn for
        rows, names = prepared_batch_rows(cfg.model_copy(update={"seed": seed}))
        assert [sorted(names[i] for i in row) for row in rows["label"] if names.index("remorse") in row] == [
            ["gratitude", "remorse"]]

    # prepare reads batch.json: a label no ingest accepted is refused, naming the batch
    (batch,) = batch_dirs(cfg.data.batches_dir)
    meta = json.loads((batch / "batch.json").read_text())
    (batch / "batch.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "new_labels"}))
    before = (cfg.data.prepared_dir / "train.parquet").read_bytes()
    with pytest.raises(DataError, match=r"batch 'new' .*label\(s\) \['remorse'\] are not among .*--new-labels"):
        stages.prepare(cfg)
    assert (cfg.data.prepared_dir / "train.parquet").read_bytes() == before  # the last prepared data, kept


def test_a_row_without_labels_is_refused_by_line_where_the_task_wants_one(tmp_path):
    cfg, header, lines = goemotions(tmp_path)
    cfg = cfg.model_copy(update={"task": cfg.task.model_copy(update={"allow_empty": False})})
    text = lines[0].split("\t")[0]
    refused(cfg, tsv(tmp_path / "new.tsv", header, [*lines[1:3], f"{text}\t"]),
            r"new\.tsv: 1 row\(s\) without any label, e\.g\. \S*new\.tsv:4 \(set task\.allow_empty: true")


def conll_sentences(path: Path, start: int, n: int) -> list[list[tuple[str, str]]]:
    """Sentences ``start`` .. ``start + n`` of a CoNLL file as (word, NER tag) pairs."""
    blocks = path.read_text(encoding="utf-8").strip().split("\n\n")[start:start + n]
    return [[(line.split()[0], line.split()[-1]) for line in block.splitlines()] for block in blocks]


def conll(path: Path, sentences: list[list[tuple[str, str]]]) -> Path:
    path.write_text("\n\n".join("\n".join(f"{w} X {t}" for w, t in s) for s in sentences) + "\n", encoding="utf-8")
    return path


def ner_project(tmp_path: Path):
    return project(tmp_path, {"type": "token_classification"},
                   str(conll(tmp_path / "source.conll", conll_sentences(DATA / "conll2003/train.txt", 0, 60))))


@pytest.mark.parametrize("form", ["conll", "jsonl"])
def test_token_tags_join_training_word_by_word(tmp_path, form):
    cfg = ner_project(tmp_path)
    seen = conll_sentences(DATA / "conll2003/train.txt", 0, 60)
    batch = [s for s in conll_sentences(DATA / "conll2003/train.txt", 60, 20) if s not in seen][:10]
    if form == "conll":
        new = conll(tmp_path / "new.conll", batch)
    else:
        new = tmp_path / "new.jsonl"
        new.write_text("".join(json.dumps({"tokens": [w for w, _ in s], "tags": [t for _, t in s]}) + "\n" for s in batch))
    assert stages.ingest(cfg, new)["rows"] == 10

    rows, names = prepared_batch_rows(cfg)
    starts = [1 + i if form == "jsonl" else 1 + sum(len(s) + 1 for s in batch[:i]) for i in range(len(batch))]
    expected = {" ".join(w for w, _ in s): (s, start) for s, start in zip(batch, starts, strict=True)}
    assert len(rows) >= 5
    for row in rows.itertuples():
        words, start = expected[row.text]
        assert list(row.tokens) == [w for w, _ in words]
        assert [names[i] for i in row.label] == [t for _, t in words]
        assert row.origin == f"{new}:{start}"


@pytest.mark.parametrize(("bad_line", "match"), [
    ("Paris", r"new\.conll:6: expected 'token \.\.\. tag' columns, got 'Paris'"),
    ("Paris X X-LOC", r"the sentence at \S*new\.conll:4: tag 'X-LOC' of word 3 \('Paris'\) is not a BIO tag"),
    ("Paris X B-CITY", r"new\.conll: label\(s\) \['B-CITY'\] are not among the labels trained on \['B-LOC', .*"
                       r"e\.g\. at \S*new\.conll:4: .*--new-labels"),
])
def test_a_malformed_tag_file_is_refused_by_line(tmp_path, bad_line, match):
    cfg = ner_project(tmp_path)
    new = tmp_path / "new.conll"
    new.write_text(f"Bonn X B-LOC\nrains X O\n\nShe X O\nlikes X O\n{bad_line}\n. X O\n", encoding="utf-8")
    refused(cfg, new, match)


def test_prompts_and_answers_join_training(tmp_path):
    cfg = project(tmp_path, {"type": "causal_lm"}, "builtin:reverse", **{"data.demo.n_samples": 40})
    symbols = ["a b c d e f", "b c d e f g", "c d e f g h", "h g f e d c", "a c e g b d", "b d f h a c"]
    new = tmp_path / "new.jsonl"
    new.write_text("".join(json.dumps({"prompt": f"reverse: {s}", "response": " ".join(s.split()[::-1])}) + "\n"
                           for s in symbols))
    assert stages.ingest(cfg, new)["labelled"]

    rows, _ = prepared_batch_rows(cfg)
    assert len(rows) >= 3
    for row in rows.itertuples():  # no origin column: the built-in source's rows have none
        assert row.text.removeprefix("reverse: ") in symbols
        assert row.label == " ".join(row.text.removeprefix("reverse: ").split()[::-1])


def test_prompts_without_an_answer_are_refused_by_line(tmp_path):
    cfg = project(tmp_path, {"type": "causal_lm"}, "builtin:reverse", **{"data.demo.n_samples": 40})
    new = tmp_path / "new.jsonl"
    new.write_text('{"prompt": "reverse: a b c d e f", "response": "f e d c b a"}\n{"prompt": "reverse: h g f e d c"}\n'
                   '{"prompt": "reverse: b c d e f g", "response": "  "}\n')
    refused(cfg, new, r"new\.jsonl: 1 of 3 row\(s\) have no label \(column 'response'\), e\.g\. \S*new\.jsonl:2: "
                      r".*--unlabelled-rows drop")
    refused(cfg, new, r"new\.jsonl: 1 null or empty response\(s\) .*e\.g\. \S*new\.jsonl:3$",
            Answers(unlabelled_rows="drop"))


def test_chat_messages_join_training_and_a_chat_without_an_answer_is_refused_by_line(tmp_path):
    def chat(prompt: str, *answer: str) -> str:
        turns = [{"role": "user", "content": prompt}, *({"role": "assistant", "content": a} for a in answer)]
        return json.dumps({"chat": turns}) + "\n"

    rows = project(tmp_path, {"type": "causal_lm"}, "builtin:reverse").task_type().builtin("reverse", 40, 0)
    (tmp_path / "source.jsonl").write_text("".join(chat(p, r) for p, r in zip(rows["prompt"], rows["response"], strict=True)))
    cfg = project(tmp_path, {"type": "causal_lm", "messages_column": "chat"}, str(tmp_path / "source.jsonl"))
    symbols = ["a b c d e f", "b c d e f g", "c d e f g h", "h g f e d c", "a c e g b d", "b d f h a c"]
    new = tmp_path / "new.jsonl"
    new.write_text("".join(chat(f"reverse: {s}", " ".join(s.split()[::-1])) for s in symbols))
    assert stages.ingest(cfg, new)["labelled"]
    prepared, _ = prepared_batch_rows(cfg)
    assert len(prepared) >= 3
    for row in prepared.itertuples():
        number = next(i for i, s in enumerate(symbols, 1) if f"reverse: {s}" in row.text)
        assert (row.label, row.origin) == (" ".join(symbols[number - 1].split()[::-1]), f"{new}:{number}")
        assert json.loads(row.messages) == [{"role": "user", "content": f"reverse: {symbols[number - 1]}"}]

    bad = tmp_path / "bad.jsonl"
    bad.write_text(chat("reverse: a b c d e g", "g e d c b a") + chat("reverse: a b c d e h"))
    refused_again = r"bad\.jsonl: \S*bad\.jsonl:2: messages must be a list of at least a prompt and a response"
    with pytest.raises(DataError, match=refused_again):
        stages.ingest(cfg, bad)
    assert [p.name for p in cfg.data.batches_dir.iterdir()] == ["0001-new"]  # nothing else left


@pytest.mark.parametrize("task", ["stsb", "goemotions", "conll", "causal_lm"])
def test_a_batch_that_repeats_the_source_is_refused_for_every_task(tmp_path, task):
    """The duplicate rule of classification batches, per task: a row the source holds is refused
    (--duplicates), whatever the file's bytes."""
    if task == "stsb":
        header, lines = shared_lines("stsb/train.tsv")
        cfg = project(tmp_path, {"type": "regression", **PAIRS, "label_column": "score"},
                      str(tsv(tmp_path / "source.tsv", header, lines[:30])))
        a, b, score = lines[3].split("\t")  # saved again as JSON Lines, the score a number: 5.000 is 5.0
        new = tmp_path / "new.jsonl"
        new.write_text("".join(json.dumps(dict(zip(header.split("\t"), row, strict=True))) + "\n"
                               for row in [lines[40].split("\t"), [f"{a} ", b, float(score)]]))
    elif task == "goemotions":
        cfg, header, lines = goemotions(tmp_path)
        several = next(line for line in (tmp_path / "source.tsv").read_text(encoding="utf-8").splitlines() if "," in line)
        new = tmp_path / "new.jsonl"  # saved again as JSON Lines, the labels a list: one label list
        new.write_text("".join(json.dumps({"text": text, "labels": labels.split(",")}) + "\n"
                               for text, labels in (lines[0].split("\t"), several.split("\t"))))
    elif task == "conll":
        cfg = ner_project(tmp_path)
        new = conll(tmp_path / "new.conll", conll_sentences(DATA / "conll2003/train.txt", 58, 4))
    else:
        cfg = project(tmp_path, {"type": "causal_lm"}, "builtin:reverse", **{"data.demo.n_samples": 40})
        first = cfg.task_type().builtin("reverse", 40, cfg.seed).iloc[0]
        new = tmp_path / "new.jsonl"
        new.write_text(json.dumps({"prompt": first["prompt"], "response": first["response"]}) + "\n"
                       + json.dumps({"prompt": "reverse: a b c d e f", "response": "f e d c b a"}) + "\n")
    refused(cfg, new, r"row\(s\) repeat rows of data\.source \(\d+\).*--duplicates drop")
    assert stages.ingest(cfg, new, answers=Answers(duplicates="drop"))["duplicates"]["action"] == "dropped"
