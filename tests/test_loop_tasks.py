"""The whole loop for every task but single-text classification (issue 34): pair classification and
pair regression (cross- and bi-encoded), multi-label, NER and a causal LM, each trained briefly on
slices of the real RTE, STS-B, GoEmotions and CoNLL-2003 files (a causal LM: a tiny random decoder on
the built-in copy task) and taken through promote → predict → monitor (with and without labels) →
ingest → retrain → gate. Each step's numbers are held to the first run's own test predictions and
metrics: predict gives the run's test predictions on the same rows, monitor the run's test value of
the primary metric on them, and the gate re-scores the champion on the source's test rows (which the
batch leaves as they were) to that same value."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ftlab import stages
from ftlab.core import layout
from ftlab.learning.config import Config, load_config
from ftlab.learning.tasks.synthetic import synthetic
from ftlab.learning.tiny_decoder import build
from ftlab.serving.predict import predict_file
from ftlab.serving.promote import model_dir
from tests.frozen_heap import frozen_heap, unfrozen_after_module  # noqa: F401  (autouse: tests on a frozen heap)
from tests.test_bi_encoder import TASKS as PAIR_TASKS, slices
from tests.test_predict_pairs import CROSS, tiny_bert  # noqa: F401  (a fixture)
from tests.test_predict_tags import FAST
from tests.test_tasks import DATA, _labels_seen, conll_sentences, conll_slices, tsv_slices

BATCH = 40  # new labelled rows per batch: 8 of them join the test rows the gate judges on


def config(root: Path, model: str, task: dict, source: object, **overrides: object) -> Config:
    """Eight steps, the best weights by validation loss: by the primary metric, step 0 often stayed best
    (RTE, STS-B cross-encoded, NER) and both runs kept the seeded initial weights: a challenger that
    was its champion, judged equal by the gate on every row."""
    values = {"task": task, "data.source": source, "data.prepared_dir": str(root / "data/prepared"),
              "data.batches_dir": str(root / "data/batches"), "model.name": model, "model.max_length": 64,
              "methods": ["full"], "train.batch_size": 16, "train.eval_steps": 4, "train.max_steps": 8,
              "train.train_eval_samples": 16, "train.metric_for_best": "loss", "train.threads": 1, "train.precision": "fp32",
              "train.checkpoint_dir": None, "train.early_stopping_patience": 0,
              "train.output_dir": str(root / "runs"), "report.dir": str(root / "reports"),
              "promote.dir": str(root / "models"), "monitor.out_dir": str(root / "monitor"),
              "monitor.queue_size": 0, "monitor.min_rows": 10, **overrides}
    return load_config(None, values)


def read_tsv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False)


def pairs(name: str, encoding: str) -> Callable[[Path, dict[str, str]], tuple[Config, Path]]:
    """RTE or STS-B pairs (96 train, 32 validation, 48 test) and a batch of the next train pairs."""
    def setup(root: Path, models: dict[str, str]) -> tuple[Config, Path]:
        source = slices(name, root / "src")
        seen = set(map(tuple, read_tsv(Path(source["train"]))[["sentence1", "sentence2"]].to_numpy()))
        rows = read_tsv(DATA / name / "train.tsv").iloc[96:].drop_duplicates(["sentence1", "sentence2"])
        rows = rows[[(a, b) not in seen for a, b in rows[["sentence1", "sentence2"]].to_numpy()]].head(BATCH)
        rows.to_csv(root / "batch.tsv", sep="\t", index=False, quoting=csv.QUOTE_NONE)
        task = {**PAIR_TASKS[name], "pair_encoding": encoding}
        more = CROSS if encoding == "cross" else {"method_params.full.lr": 1e-3}
        return config(root, models["wide" if encoding == "cross" else "plain"], task, source, **more), root / "batch.tsv"

    return setup


def goemotions(root: Path, models: dict[str, str]) -> tuple[Config, Path]:
    """GoEmotions slices (96/32/32) and a batch of later train rows whose labels the slice trains on."""
    (root / "src").mkdir(parents=True)
    source = tsv_slices("goemotions", root / "src", keep=_labels_seen)
    known = {label for labels in read_tsv(Path(source["train"]))["labels"] for label in labels.split(",")}
    rows = read_tsv(DATA / "goemotions" / "train.tsv").iloc[96:]
    rows[[set(labels.split(",")) <= known for labels in rows["labels"]]].head(BATCH).to_csv(
        root / "batch.tsv", sep="\t", index=False, quoting=csv.QUOTE_NONE)
    task = {"type": "multilabel", "label_column": "labels"}
    return config(root, models["wide"], task, source, **FAST), root / "batch.tsv"


def conll(root: Path, models: dict[str, str]) -> tuple[Config, Path]:
    """CoNLL-2003 slices (96/32/32 sentences) and a batch of the next train sentences with known tags."""
    (root / "src").mkdir(parents=True)
    source, _ = conll_slices(root / "src")
    sentences = conll_sentences(DATA / "conll2003" / "train.txt", 96 + 2 * BATCH)
    tags = {t for s in sentences[:96] for _, t in s}
    batch = [s for s in sentences[96:] if {t for _, t in s} <= tags and s not in sentences[:96]][:BATCH]
    (root / "batch.conll").write_text("\n\n".join("\n".join(f"{w} X {t}" for w, t in s) for s in batch) + "\n")
    more = {**FAST, "method_params.full.lr": 3e-4}  # 1e-3 left only O tags by the lowest validation loss
    return config(root, models["wide"], {"type": "token_classification"}, source, **more), root / "batch.conll"


def causal_lm(root: Path, models: dict[str, str]) -> tuple[Config, Path]:
    """builtin:copy (120 prompts; as tests/test_predict_causal.py trains it) and a batch of 40 prompts
    drawn after them by the same generator: none repeats a source prompt."""
    task = {"type": "causal_lm", "max_new_tokens": 8}
    cfg = config(root, models["decoder"], task, "builtin:copy", **{
        "data.demo.n_samples": 120, "model.max_length": 32, "method_params.full.lr": 1e-2,
        "train.eval_batch_size": 32, "train.eval_steps": 20, "train.max_steps": 40})
    synthetic("copy", 120 + BATCH, cfg.seed).iloc[120:].to_json(root / "batch.jsonl", orient="records", lines=True)
    return cfg, root / "batch.jsonl"


CASES = {"rte-cross": pairs("rte", "cross"), "rte-bi": pairs("rte", "bi"), "stsb-cross": pairs("stsb", "cross"),
         "stsb-bi": pairs("stsb", "bi"), "goemotions": goemotions, "conll": conll, "causal-lm": causal_lm}


def user_rows(meta: dict, expected: pd.DataFrame, labels: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The run's test rows as a user's files hold them, in its training columns: without and with labels
    (label names, a score, a label list, a sentence's words and tags, or a prompt's response). NER
    models read raw texts: the words joined by spaces."""
    task, text, target = meta["task_type"], meta["text_column"], meta["label_column"]
    if task == "token_classification":
        words = [list(w) for w in expected["tokens"]]
        tagged = pd.DataFrame({text: words, target: [[labels[i] for i in row] for row in expected["label"]]})
        return pd.DataFrame({"text": [" ".join(w) for w in words]}), tagged
    plain = pd.DataFrame({text: expected["text"]})
    if meta.get("text_pair_column"):
        plain[meta["text_pair_column"]] = expected["text_pair"]
    gold = {"classification": lambda y: [labels[i] for i in y], "regression": list,
            "multilabel": lambda y: [[labels[i] for i in row] for row in y], "causal_lm": list}[task]
    return plain, plain.assign(**{target: gold(expected["label"])})


def assert_predicted_as_the_run(meta: dict, out: pd.DataFrame, expected: pd.DataFrame, labels: list[str]) -> None:
    """predict's output on the run's test rows is the run's test predictions: classes and probabilities
    (1e-5), scores (1e-5), label sets, answers (identical); NER entities each word's predicted entity
    type (the entity holding its first sub-token, which is the sub-token the run's tag is read from)."""
    task = meta["task_type"]
    if task == "token_classification":
        kinds = [[labels[i][2:] if labels[i] != "O" else None for i in row] for row in expected["prediction"]]
        assert sum(k is not None for row in kinds for k in row) > 5  # the run found entities to compare
        for text, found, want in zip(out["text"], out["entities"], kinds, strict=True):
            starts = np.cumsum([0, *(len(w) + 1 for w in text.split(" "))])[:-1]
            got = [next((e["type"] for e in found if e["start"] <= s < e["end"]), None) for s in starts]
            assert got == want, text
        return
    if task == "causal_lm":
        assert list(out["prediction"]) == list(expected["prediction"]) and expected["prediction"].nunique() > 1
        return
    if task == "regression":
        assert np.ptp(expected["prediction"]) > 1e-3  # scores that differ by row: a row out of place would show
        np.testing.assert_allclose(out["prediction"], expected["prediction"], atol=1e-5)
        return
    if task == "multilabel":
        assert [list(p) for p in out["prediction"]] == [[labels[i] for i in row] for row in expected["prediction"]]
    else:
        assert list(out["prediction"]) == [labels[i] for i in expected["prediction"]]
    probs = [f"prob_{n}" for n in labels]
    assert np.ptp(expected[probs[0]]) > 1e-4
    np.testing.assert_allclose(out[probs].to_numpy(), expected[probs].to_numpy(), atol=1e-5)


def retrained(cfg: Config, batch: Path) -> tuple[dict, pd.DataFrame]:
    """The batch ingested, the data prepared again and the run retrained, compared and promoted (or
    refused by the gate): ``ftlab.json`` after promote, and the prepared train split."""
    info = stages.ingest(cfg, batch)
    assert info["labelled"] and info["rows"] == BATCH, info
    stages.prepare(cfg)
    train = pd.read_parquet(cfg.data.prepared_dir / "train.parquet")
    stages.train(cfg, "full")
    stages.compare(cfg)
    return stages.promote(cfg), train


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_model, tiny_bert) -> dict[str, str]:  # noqa: F811
    return {"plain": tiny_model, "wide": tiny_bert, "decoder": build(tmp_path_factory.mktemp("decoder"), "llama")}


@pytest.mark.parametrize("case", list(CASES))
def test_the_loop_holds_the_runs_own_numbers(tmp_path, models, case):
    """promote → predict → monitor (labelled, then the same rows without labels) → ingest → retrain →
    gate, each held to the first run's test predictions and primary metric; the gate's decision, with
    its reason, is the one promote acted on (a new version exactly when promoted)."""
    cfg, batch = CASES[case](tmp_path, models)
    stages.prepare(cfg)
    stages.train(cfg, "full")
    stages.compare(cfg)
    first = stages.promote(cfg)
    run = layout.run_dir(cfg, stages.cell(cfg, "full"))
    expected, labels = pd.read_parquet(run / "predictions.parquet"), first["labels"]
    metrics = json.loads((run / "metrics.json").read_text())
    primary, tested = metrics["primary_metric"], metrics[metrics["primary_metric"]]

    plain, labelled = user_rows(first, expected, labels)
    plain.to_json(tmp_path / "new.jsonl", orient="records", lines=True)
    labelled.to_json(tmp_path / "labelled.jsonl", orient="records", lines=True)
    predict_file(model_dir(cfg), tmp_path / "new.jsonl", tmp_path / "out.jsonl", chunk_rows=10, precision="fp32")
    out = pd.read_json(tmp_path / "out.jsonl", lines=True, dtype=False)
    assert len(out) == len(expected)
    assert_predicted_as_the_run(first, out, expected, labels)

    own = stages.monitor(cfg, tmp_path / "labelled.jsonl")
    assert own["labelled"] and own["signals"][primary]["current"] == pytest.approx(tested, abs=1e-6)
    assert not own["signals"][primary]["drifted"] and own["verdict"] == "ok", own["reasons"]
    unlabelled = stages.monitor(cfg, tmp_path / "new.jsonl")
    assert not unlabelled["labelled"] and primary not in unlabelled["signals"] and unlabelled["verdict"] == "ok"

    meta, train = retrained(cfg, batch)
    decision = meta["promotion"]
    assert len(train[train["slice"] == batch.stem]) >= BATCH // 2  # the batch's rows reach training ...
    challenger = json.loads((run / "metrics.json").read_text())
    assert challenger["n_train"] == len(train)  # ... and the run trained on them, into another model than the
    assert challenger["best_step"] > 0  # champion: weights trained, not the seeded initial ones both start from
    found = decision["comparisons"]
    assert list(found) == ["overall", "source", batch.stem] and found[batch.stem]["rows"] >= 4
    assert found["source"]["champion"] == pytest.approx(tested, abs=1e-6)  # re-scored on its own test rows
    assert found["overall"]["challenger"] == pytest.approx(challenger[primary], abs=1e-6)
    stated = ("better than", "not worse than") if decision["promoted"] else ("significantly worse", "not significantly better")
    assert decision["reason"].startswith(stated) and meta["version"] == (2 if decision["promoted"] else 1), decision
