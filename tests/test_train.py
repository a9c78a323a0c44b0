"""Real training runs on the tiny BERT: loss falls, runs are complete, reproducible and reloadable."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from ftlab.analysis.runs import load_run, merge_adapter
from ftlab.core.config import Cell
from ftlab.data.prepare import DataError, load_prepared
from ftlab.learning.config import Config, load_config
from ftlab.learning.methods import METHODS
from ftlab.learning.modeling import load_tokenizer
from ftlab.training.scoring import predict
from ftlab.training.train import subsample, train
from tests.frozen_heap import frozen_heap, unfrozen_after_module  # noqa: F401  (autouse: tests on a frozen heap)

# learning rates that make the tiny random model learn the toy task within 60 steps
FAST = {
    "full": {"lr": 3e-3}, "llrd": {"lr": 3e-3}, "freeze": {"lr": 1e-2, "k": 2}, "bitfit": {"lr": 3e-2},
    "lora": {"lr": 2e-2}, "dora": {"lr": 2e-2}, "ia3": {"lr": 5e-2},
    "prompt_tuning": {"lr": 1e-1, "init": "random", "num_virtual_tokens": 4}, "prefix_tuning": {"lr": 3e-2}, "p_tuning": {"lr": 5e-2, "num_virtual_tokens": 4},
    "adapter": {"lr": 2e-2}, "probe": {"lr": 5e-2},
}


Trained = Callable[[str], tuple[Config, dict, Path]]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model, toy_csv) -> Trained:
    """One fp32 run per method (60 steps at its FAST rate, evaluated every 20, no early stopping), trained
    on first use and shared read-only by the tests that only read a run: (config, metrics, run directory).
    fp32 so a reload reproduces the saved predictions exactly ("auto" is bf16 on an AVX512-BF16 CPU)."""
    root = tmp_path_factory.mktemp("trained")
    runs: dict[str, tuple[Config, dict, Path]] = {}

    def get(method: str) -> tuple[Config, dict, Path]:
        if method not in runs:
            cfg = load_config(None, {
                "data.source": str(toy_csv), "data.prepared_dir": str(root / "data"), "model.name": tiny_model,
                "train.batch_size": 16, "train.eval_steps": 20, "train.max_steps": 60,
                "train.early_stopping_patience": 0, "train.train_eval_samples": 64, "train.precision": "fp32",
                "train.output_dir": str(root / "runs"), "train.checkpoint_dir": str(root / "checkpoints"),
                "train.threads": 1, f"method_params.{method}": FAST[method]})
            runs[method] = (cfg, train(cfg, method, root / method), root / method)
        return runs[method]

    return get


@pytest.mark.parametrize("method", list(METHODS))
def test_loss_falls_for_every_method(trained, method):
    _, metrics, run = trained(method)
    history = json.loads((run / "history.json").read_text())
    assert [h["step"] for h in history] == [0, 20, 40, 60]
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.01, history
    assert metrics["trainable_params"] < metrics["total_params"] or method in ("full", "llrd")


def test_run_directory_is_complete(trained):
    cfg, metrics, run = trained("lora")
    for name in ("metrics.json", "history.json", "predictions.parquet", "config.yaml", "labels.json",
                 "model/adapter_model.safetensors", "model/adapter_config.json", "tokenizer/tokenizer.json"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").rglob("events.out.tfevents*"))
    live = json.loads((run / "dvclive/metrics.json").read_text())  # DVCLive: the last logged values
    assert live["eval"]["validation_accuracy"] == json.loads((run / "history.json").read_text())[-1]["validation_accuracy"]
    assert (run / "dvclive/plots/metrics/loss.tsv").read_text().startswith("step\tloss")
    assert not list(run.rglob("*.bin")) and not list(run.rglob("*.pt"))
    for key in ("accuracy", "macro_f1", "test_loss", "per_class", "confusion_matrix", "trainable_params",
                "total_params", "trainable_percent", "artifact_bytes", "n_train", "n_test", "seed"):
        assert key in metrics, key
    for key in ("train_seconds", "train_samples_per_second", "eval_latency_ms_per_sample", "peak_memory_mb"):
        assert metrics["cost"][key] > 0, key
    assert metrics == json.loads((run / "metrics.json").read_text())
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["n_test"]
    assert metrics["cost"]["peak_memory_mb"] > 50
    assert metrics["artifact_bytes"] == sum(f.stat().st_size for f in (run / "model").iterdir())
    preds = pd.read_parquet(run / "predictions.parquet")
    assert len(preds) == metrics["n_test"]
    assert (preds["label"] == preds["prediction"]).mean() == pytest.approx(metrics["accuracy"])
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["name"] == cfg.model.name


def test_same_seed_same_metrics(trained, tmp_path):
    cfg, first, run = trained("full")
    a, b = dict(first), train(cfg, "full", tmp_path / "b")  # a copy: the shared run's metrics stay whole
    a.pop("cost"), b.pop("cost")  # measured wall time, throughput and memory
    assert a == b
    pd.testing.assert_frame_equal(pd.read_parquet(run / "predictions.parquet"),
                                  pd.read_parquet(tmp_path / "b/predictions.parquet"))


def _probs(run_dir, model, cfg, bf16=False):
    splits, labels = load_prepared(cfg)
    tok = load_tokenizer(cfg.model)
    task = cfg.task_type()
    logits = np.stack(predict(model, task.tokenize(splits["test"], tok, cfg.model.max_length, labels), task.collator(tok), 32, bf16))
    return torch.softmax(torch.from_numpy(logits), dim=-1).numpy()


def _saved_probs(run_dir):
    preds = pd.read_parquet(run_dir / "predictions.parquet")
    return preds[[c for c in preds.columns if c.startswith("prob_")]].to_numpy()


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_precision_is_applied_and_recorded(make_config, trained, tmp_path, precision):
    """bf16 autocasts the matmuls (weights stay fp32) in training, evaluation and the test predictions.
    fp32 reads the shared fp32 run of full (the same settings: 60 steps at FAST's rate)."""
    if precision == "fp32":
        cfg, metrics, run = trained("full")
    else:
        cfg = make_config(train__precision=precision, train__max_steps=60, train__eval_steps=20,
                          train__early_stopping_patience=0, method_params__full=FAST["full"])
        run = tmp_path / "run"
        metrics = train(cfg, "full", run)
    assert metrics["cost"]["precision"] == precision
    history = json.loads((run / "history.json").read_text())
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.01, history
    _, model, _ = load_run(run)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    saved = _saved_probs(run)
    np.testing.assert_allclose(_probs(None, model, cfg, bf16=precision == "bf16"), saved, atol=2e-2)
    if precision == "bf16":  # the saved predictions were computed in bf16, not fp32
        assert np.abs(_probs(None, model, cfg) - saved).max() > 1e-6


def assert_reloads_with_identical_predictions(run, cfg, method) -> None:
    loaded_cfg, model, labels = load_run(run)
    assert labels == ["neg", "pos"] and loaded_cfg == cfg.for_cell(Cell(method, cfg.seed, "all"))
    np.testing.assert_allclose(_probs(run, model, cfg), _saved_probs(run), atol=1e-6)


# lora and ia3 (and dora) reload in test_merged_adapter_predicts_like_the_adapter, from the same runs
@pytest.mark.parametrize("method", ["full", "prompt_tuning"])
def test_saved_run_reloads_with_identical_predictions(trained, method):
    # fp32: exact reproduction; bf16 rounds differently at another batch size (see the bf16 test)
    cfg, _, run = trained(method)
    assert_reloads_with_identical_predictions(run, cfg, method)


def test_early_stopping_restores_the_best_weights(make_config, tmp_path):
    # lr far too high: validation accuracy peaks early, then training diverges
    cfg = make_config(train__max_steps=60, train__eval_steps=5, train__early_stopping_patience=2,
                      train__precision="fp32", method_params__full={"lr": 0.5})
    metrics = train(cfg, "full", tmp_path / "run")
    history = json.loads((tmp_path / "run/history.json").read_text())
    assert metrics["steps"] < 60  # stopped early
    best = max(history, key=lambda h: h["validation_accuracy"])
    assert metrics["best_step"] == best["step"]
    _, model, _ = load_run(tmp_path / "run")
    splits, _ = load_prepared(cfg)
    val_acc = (_probs(None, model, cfg.model_copy(update={})).argmax(-1) == splits["test"]["label"]).mean()
    assert val_acc == pytest.approx(metrics["accuracy"])


@pytest.mark.parametrize("method", ["lora", "dora", "ia3"])
def test_merged_adapter_predicts_like_the_adapter(trained, tmp_path, method):
    cfg, _, run = trained(method)
    assert_reloads_with_identical_predictions(run, cfg, method)
    merged = merge_adapter(run, tmp_path / "merged")
    from ftlab.learning.modeling import load_trained

    model = load_trained(cfg.model, ["neg", "pos"], merged, adapter=False)
    assert not any("lora_" in n or "ia3_" in n for n, _ in model.named_parameters())
    np.testing.assert_allclose(_probs(run, model, cfg), _saved_probs(run), atol=1e-5)


def test_merge_refuses_prompt_tuning(trained, tmp_path):
    _, _, run = trained("prompt_tuning")
    with pytest.raises(ValueError, match="cannot merge"):
        merge_adapter(run, tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_failed_run_leaves_an_earlier_result_untouched(make_config, trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained("full")[2], run)  # a copy: this test writes over it
    before = (run / "metrics.json").read_bytes()
    with pytest.raises(ValueError, match=r"freeze\.k=9"):
        train(make_config(method_params__freeze={"k": 9}), "freeze", run)
    assert (run / "metrics.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_diverging_loss_stops_with_step_and_method(make_config, tmp_path, tiny_model):
    """A checkpoint with a NaN weight: the run stops at the first logged step, naming the method."""
    from safetensors.torch import load_file, save_file

    from ftlab.training.trainer import TrainingDiverged

    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model, broken)
    weights = load_file(broken / "model.safetensors")
    key = next(k for k in weights if k.endswith("position_embeddings.weight"))
    weights[key][0] = float("nan")
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    cfg = make_config(model__name=str(broken), train__logging_steps=1)
    with pytest.raises(TrainingDiverged, match=r"full: training loss became nan by step 1;"):
        train(cfg, "full", tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_unusable_model_paths_are_named(make_config, tmp_path, pooling):
    with pytest.raises(ValueError, match=r"model\.name ./no/such/model.: cannot load a model config"):
        train(make_config(model__name="/no/such/model", model__pooling=pooling), "full", tmp_path / "a")
    from transformers import ViTConfig

    vit = tmp_path / "vit"
    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64).save_pretrained(vit)
    with pytest.raises(ValueError, match="'vit' model is not a text model"):
        train(make_config(model__name=str(vit), model__pooling=pooling), "full", tmp_path / "b")


def test_train_subsets_are_nested_per_seed_and_differ_across_seeds():
    from tests.conftest import toy_reviews

    rows = toy_reviews(200)
    small, large = subsample(rows, 50, seed=1), subsample(rows, 120, seed=1)
    assert len(small) == 50 and len(large) == 120
    assert set(small["text"]) < set(large["text"])
    assert set(subsample(rows, 50, seed=2)["text"]) != set(small["text"])
    assert subsample(rows, "all", seed=1) is rows
    with pytest.raises(DataError, match=r"train size 500 \(train_sizes, or search.train_size for a search\) is more than the 200 rows"):
        subsample(rows, 500, seed=1)


def test_a_cell_trains_on_its_size_and_seed_with_at_least_min_steps(make_config, tmp_path):
    cfg = make_config(train__max_steps=-1, train__epochs=1, train__min_steps=7, seeds=[3, 4])
    metrics = train(cfg, "lora", tmp_path / "a", seed=4, train_size=40)
    assert (metrics["n_train"], metrics["seed"], metrics["train_size"]) == (40, 4, 40)
    assert metrics["steps"] == 7  # one epoch of 40 examples is 3 steps of 16
    assert yaml.safe_load((tmp_path / "a/config.yaml").read_text())["seeds"] == [4]
    other = train(cfg, "lora", tmp_path / "b", seed=3, train_size=40)
    assert other["accuracy"] != metrics["accuracy"] or other["test_loss"] != metrics["test_loss"]


def test_compiled_steps_train_like_eager_ones(make_config, tmp_path):
    """train.compile on: inductor-compiled steps on 16-token buckets end at the eager run's losses and
    test probabilities, up to float summation order; the run records what it ran."""
    from torch._dynamo.utils import counters

    runs = {}
    for setting in ("off", "on"):
        # dropout off: eager and inductor draw different masks
        cfg = make_config(model__dropout=0.0, model__encoder_dropout=0.0, train__compile=setting,
                          train__pad_to_multiple_of=16, train__max_steps=6, train__eval_steps=3,
                          train__precision="fp32", method_params__full=FAST["full"])
        runs[setting] = train(cfg, "full", tmp_path / setting)
    assert counters["stats"]["unique_graphs"] > 0  # inductor did compile the steps
    assert runs["on"]["cost"]["compile"] is True and runs["off"]["cost"]["compile"] is False
    assert runs["on"]["cost"]["pad_to_multiple_of"] == 16
    eager, compiled = (json.loads((tmp_path / s / "history.json").read_text()) for s in ("off", "on"))
    assert eager[-1]["train_loss"] < eager[0]["train_loss"]  # the steps compared did train
    for a, b in zip(eager, compiled, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-4)
    np.testing.assert_allclose(_saved_probs(tmp_path / "on"), _saved_probs(tmp_path / "off"), atol=1e-4)


def test_full_fine_tuning_can_keep_the_word_embeddings(make_config, tmp_path):
    """full with train_embeddings false trains every parameter but the word-embedding table."""
    cfg = make_config(method_params__full={**FAST["full"], "train_embeddings": False}, train__max_steps=4)
    metrics = train(cfg, "full", tmp_path / "run")
    _, trained, labels = load_run(tmp_path / "run")
    pretrained = cfg.task_type().build_model(cfg.model, labels, None)
    table = pretrained.get_input_embeddings().weight
    assert metrics["trainable_params"] == metrics["total_params"] - table.numel()
    assert torch.equal(trained.get_input_embeddings().weight, table)
    changed = [n for n, p in trained.named_parameters() if not torch.equal(p, dict(pretrained.named_parameters())[n])]
    assert changed and not any("word_embeddings" in n for n in changed)


def test_many_classes_write_their_top_confusions_not_a_matrix():
    """A confusion matrix grows with the square of the classes (5,000 classes: 225 MB of metrics.json):
    past MAX_CONFUSION_CLASSES the most frequent confusions are written, counted right."""
    from ftlab.learning.metrics import MAX_CONFUSION_CLASSES, TOP_CONFUSIONS, classification_metrics

    few = classification_metrics([0, 1, 2, 2], [0, 2, 2, 1], labels=["a", "b", "c"])
    assert few["confusion_matrix"] == [[1, 0, 0], [0, 0, 1], [0, 1, 1]] and "top_confusions" not in few
    labels = [f"c{i}" for i in range(4 * MAX_CONFUSION_CLASSES)]
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, len(labels), 5000)
    y_pred = np.where(rng.random(5000) < 0.5, y_true, rng.integers(0, len(labels), 5000))
    y_true[:7], y_pred[:7] = 3, 5  # the most frequent confusion: c3 taken for c5, 7 times at least
    many = classification_metrics(y_true, y_pred, labels=labels)
    top = many["top_confusions"]
    assert "confusion_matrix" not in many and len(top) == TOP_CONFUSIONS and len(many["per_class"]) == len(labels)
    counts = [t["count"] for t in top]
    assert counts == sorted(counts, reverse=True)
    expected = int(((y_true == 3) & (y_pred == 5)).sum())
    assert top[0] == {"true": "c3", "predicted": "c5", "count": expected} and expected >= 7
    for t in top[:5]:
        i, j = labels.index(t["true"]), labels.index(t["predicted"])
        assert t["count"] == int(((y_true == i) & (y_pred == j)).sum()) and i != j
