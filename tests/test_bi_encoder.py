"""Pairs as a bi-encoder (``task.pair_encoding: bi``, issue 29): each text encoded alone by the one
shared encoder, trained on slices of the real STS-B and RTE files with a tiny BERT; the promoted
model loads with sentence-transformers alone and reproduces the run's test scores, and ``ftlab
monitor`` holds it to them."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ftlab import stages
from ftlab.core import layout
from ftlab.core.config import MonitorConfig
from ftlab.core.params import ConfigError
from ftlab.data.prepare import DataError, load_prepared
from ftlab.learning.config import load_config
from ftlab.learning.modeling import load_tokenizer
from ftlab.learning.tasks.biencoder import BiEncoder, cosine_to_score
from ftlab.serving.monitor import monitor
from ftlab.serving.promote import model_dir
from tests.frozen_heap import frozen_heap, unfrozen_after_module  # noqa: F401  (autouse: tests on a frozen heap)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TASKS = {"stsb": {"type": "regression", "text_column": "sentence1", "text_pair_column": "sentence2",
                  "label_column": "score", "pair_encoding": "bi"},
         "rte": {"type": "classification", "text_column": "sentence1", "text_pair_column": "sentence2",
                 "label_column": "label", "pair_encoding": "bi"}}


def slices(name: str, root: Path) -> dict[str, str]:
    """96 train pairs from train.tsv; 32 validation and 48 test pairs from dev.tsv."""
    read = {"sep": "\t", "quoting": csv.QUOTE_NONE}
    train, dev = pd.read_csv(DATA / name / "train.tsv", **read).head(96), pd.read_csv(DATA / name / "dev.tsv", **read)
    parts = {"train": train, "validation": dev.iloc[:32], "test": dev.iloc[32:80]}
    root.mkdir(parents=True, exist_ok=True)
    for split, df in parts.items():
        df.to_csv(root / f"{split}.tsv", sep="\t", index=False, quoting=csv.QUOTE_NONE)
    return {split: str(root / f"{split}.tsv") for split in parts}


def config(root: Path, tiny_model: str, dataset: str, methods: list[str], **overrides):
    values = {"task": TASKS[dataset], "data.source": slices(dataset, root / "src"),
              "data.prepared_dir": str(root / "data"), "model.name": tiny_model, "model.max_length": 64,
              "methods": methods, "train.batch_size": 16, "train.eval_steps": 4, "train.max_steps": 8,
              "train.train_eval_samples": 16, "train.threads": 1, "train.precision": "fp32",
              "train.checkpoint_dir": None, "train.early_stopping_patience": 0,
              "train.output_dir": str(root / "runs"), "report.dir": str(root / "reports"),
              "promote.dir": str(root / "models"), **overrides}
    return load_config(None, values)


def trained(root: Path, tiny_model: str, dataset: str, methods: list[str], **overrides):
    cfg = config(root, tiny_model, dataset, methods, **overrides)
    stages.prepare(cfg)
    for m in methods:
        stages.train(cfg, m)
    return cfg


@pytest.fixture(scope="module")
def stsb(tmp_path_factory, tiny_model):
    """Bi-encoded STS-B: full fine-tuning and LoRA, compared and each promoted."""
    cfg = trained(tmp_path_factory.mktemp("stsb"), tiny_model, "stsb", ["full", "lora"],
                  **{"method_params.full.lr": 1e-3})
    stages.compare(cfg)
    return cfg


@pytest.fixture(scope="module")
def rte(tmp_path_factory, tiny_model):
    """Bi-encoded RTE: full fine-tuning, compared and promoted; (config, ftlab.json)."""
    cfg = trained(tmp_path_factory.mktemp("rte"), tiny_model, "rte", ["full"], **{"method_params.full.lr": 1e-3})
    stages.compare(cfg)
    return cfg, stages.promote(cfg, method="full")


def run(cfg, method: str) -> Path:
    return layout.run_dir(cfg, stages.cell(cfg, method))


def tsv(path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False)


def test_each_text_is_encoded_alone_by_the_one_shared_encoder(stsb):
    """Two token sequences per pair, each [CLS] text [SEP] with no token type ids; one encoder."""
    task = stsb.task_type()
    splits, labels = load_prepared(stsb)
    tokenizer = load_tokenizer(stsb.model)
    ds = task.tokenize(splits["test"].head(4), tokenizer, 64, labels)
    assert set(ds.column_names) == {"input_ids", "attention_mask", "pair_input_ids", "pair_attention_mask", "labels"}
    for ids, text in zip(ds["pair_input_ids"], splits["test"]["text_pair"].head(4), strict=True):
        assert ids == tokenizer(text, truncation=True, max_length=64)["input_ids"]
    model = task.build_model(stsb.model, labels, splits["train"])
    assert isinstance(model, BiEncoder) and model.classifier is None
    assert model.score_range() == pytest.approx((splits["train"]["label"].min(), splits["train"]["label"].max()))
    encoders = [m for m in model.modules() if m.__class__.__name__ == "BertModel"]
    assert len(encoders) == 1


def test_bi_encoded_regression_predicts_the_cosine_on_the_score_scale(stsb):
    """The prediction is the cosine of the two embeddings mapped onto the train scores' range, so
    Spearman is the cosine's; LoRA trains its adapters in the shared encoder and nothing else."""
    from ftlab.analysis.runs import load_run

    full, lora = (json.loads((run(stsb, m) / "metrics.json").read_text()) for m in ("full", "lora"))
    assert lora["trainable_params"] < full["trainable_params"] / 50
    _, model, _ = load_run(run(stsb, "full"))
    predictions = pd.read_parquet(run(stsb, "full") / "predictions.parquet")
    tokenizer = load_tokenizer(stsb.model)
    with torch.inference_mode():
        u, v = (model.embed(**tokenizer(list(predictions[c]), padding=True, truncation=True, max_length=64,
                                        return_token_type_ids=False, return_tensors="pt"))
                for c in ("text", "text_pair"))
    cosine = (u * v).sum(-1).numpy()
    np.testing.assert_allclose(predictions["prediction"], cosine_to_score(cosine, *model.score_range()), atol=1e-5)
    from scipy.stats import spearmanr

    assert full["spearman"] == pytest.approx(spearmanr(predictions["label"], cosine).statistic, abs=1e-6)


def test_pair_classification_learns_from_u_v_and_their_difference(rte):
    """SBERT's NLI head: a softmax on (u, v, |u - v|), trained with the encoder; probabilities sum to 1."""
    cfg, meta = rte
    metrics = json.loads((run(cfg, "full") / "metrics.json").read_text())
    predictions = pd.read_parquet(run(cfg, "full") / "predictions.parquet")
    probs = predictions[["prob_entailment", "prob_not_entailment"]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert metrics["accuracy"] == pytest.approx((predictions["label"] == predictions["prediction"]).mean())
    hidden = 32  # the tiny BERT's width: the head reads 3 x hidden
    encoder = sum(p.numel() for n, p in cfg.task_type().build_model(cfg.model, ["a", "b"], None).named_parameters()
                  if n.startswith("encoder."))
    assert metrics["trainable_params"] == encoder + 3 * hidden * 2 + 2
    # the export: a SentenceTransformer and the head's tensors give back the run's probabilities
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer

    assert meta["layout"] == "bi-encoder" and meta["task"] == "text-classification"
    encoder, head = SentenceTransformer(str(model_dir(cfg)), device="cpu"), load_file(str(model_dir(cfg) / "pair_classifier.safetensors"))
    u, v = (encoder.encode(predictions[c].tolist(), convert_to_tensor=True) for c in ("text", "text_pair"))
    logits = torch.cat([u, v, (u - v).abs()], -1) @ head["weight"].T + head["bias"]
    np.testing.assert_allclose(logits.softmax(-1).numpy(), probs, atol=1e-5)


def test_bi_encoded_pair_classes_monitor_accuracy(rte, tmp_path):
    """RTE as a bi-encoder (each text encoded alone, a head on (u, v, |u - v|)): accuracy on its own test
    pairs is the run's test accuracy, the class shares and confidence those of its test predictions.
    (From test_monitor_tasks.py, which trained this same run again.)"""
    cfg, meta = rte
    tsv(cfg.data.source["test"]).to_csv(tmp_path / "pairs.csv", index=False)
    result = monitor(model_dir(cfg), tmp_path / "pairs.csv", MonitorConfig(queue_size=0), tmp_path / "monitor")
    assert result["signals"]["accuracy"]["current"] == pytest.approx(meta["test_metrics"]["accuracy"], abs=1e-9)
    assert result["signals"]["prediction"]["score"] < 1e-6 and result["signals"]["confidence"]["score"] < 1e-6


def test_the_issues_bi_encoder_batch_with_a_score_column_is_monitored_not_refused(stsb, tmp_path):
    """Issue 34's report exactly: a bi-encoder trained on STS-B, monitored on pairs.csv whose ``score``
    column holds values like 0.25 and 0.6 (the test pairs' scores on a 0-1 scale: the same ranks). Once
    "label(s) ['0.25', '0.6', …] that are neither the model's labels ['score']"; now its Spearman, equal
    to the run's test Spearman on the run's own test pairs. (From test_monitor_tasks.py, which trained
    this same run, full at lr 1e-3, again.)"""
    from scipy import stats

    named = stsb.model_copy(update={"promote": stsb.promote.model_copy(update={"name": "bi-monitored"})})
    assert stages.promote(named, method="full")["layout"] == "bi-encoder"
    test = tsv(stsb.data.source["test"])
    test.assign(score=test["score"] / 5).to_csv(tmp_path / "pairs.csv", index=False)
    result = monitor(model_dir(named), tmp_path / "pairs.csv", MonitorConfig(queue_size=0), tmp_path / "monitor")
    expected = pd.read_parquet(run(stsb, "full") / "predictions.parquet")
    assert result["signals"]["spearman"]["current"] == pytest.approx(
        stats.spearmanr(expected["label"], expected["prediction"]).statistic, abs=1e-6)
    assert result["signals"]["predicted_score"]["score"] < 1e-6  # the reference rows are these rows, scored alike
    assert "embedding" not in result["signals"]  # two embeddings per pair, no one head input


@pytest.mark.parametrize(("dataset", "methods", "overrides", "message"), [
    ("stsb", ["full", "prompt_tuning"], {}, r"method 'prompt_tuning' cannot train task 'regression' with "
                                            r"task.pair_encoding: bi: peft prepends its virtual tokens"),
    ("rte", ["prefix_tuning"], {}, r"method 'prefix_tuning' cannot train task 'classification'"),
    ("rte", ["p_tuning"], {}, r"method 'p_tuning'"),
    ("rte", ["adapter"], {"method_params.adapter.peft_type": "PROMPT_TUNING"}, r"method 'adapter'"),
    ("stsb", ["probe"], {}, r"method 'probe'.*has no head.*zero-shot cosine"),
    ("stsb", ["full"], {"model.pooling": "cls"}, r"pair_encoding: bi mean-pools each text.*model.pooling: cls"),
    ("stsb", ["full"], {"task.text_pair_column": None}, r"pair_encoding: bi encodes the two texts of a pair apart"),
])
def test_what_a_bi_encoder_cannot_train_is_refused_at_load(tmp_path, tiny_model, dataset, methods, overrides, message):
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, tiny_model, dataset, methods, **overrides)


def test_bi_encoder_options_leave_other_methods_and_cross_alone(tmp_path, tiny_model):
    assert config(tmp_path, tiny_model, "rte", ["full", "llrd", "lora", "bitfit", "probe", "adapter"])
    cross = config(tmp_path, tiny_model, "stsb", ["prompt_tuning", "probe"], **{"task.pair_encoding": "cross"})
    assert load_config(None, {}).task.pair_encoding == "cross" and cross.task.pair_encoding == "cross"


# Runs in a process that cannot import ftlab: sentence-transformers alone loads the promoted models.
LOADER = """
import json, sys
sys.modules["ftlab"] = None
try:
    import ftlab
    raise SystemExit("ftlab is importable")
except ImportError:
    pass
import pandas as pd
from sentence_transformers import SentenceTransformer

out = []
for model_dir, predictions in zip(sys.argv[1::2], sys.argv[2::2]):
    rows = pd.read_parquet(predictions)
    model = SentenceTransformer(model_dir, device="cpu")
    u = model.encode(rows["text"].tolist(), batch_size=16, convert_to_tensor=True)
    v = model.encode(rows["text_pair"].tolist(), batch_size=16, convert_to_tensor=True)
    out.append(model.similarity_pairwise(u, v).tolist())
print(json.dumps(out))
"""


def test_promoted_bi_encoder_reproduces_the_test_scores_without_ftlab(stsb):
    """The export is a SentenceTransformer (LoRA merged into the weights); its encode + cosine, on the
    score range ftlab.json records, gives back each run's test predictions and so its Spearman."""
    from scipy.stats import spearmanr

    from ftlab.serving.export import load_exported

    promoted, args = {}, []
    for method in ("full", "lora"):
        named = stsb.model_copy(update={"promote": stsb.promote.model_copy(update={"name": f"bi-{method}"})})
        promoted[method] = meta = stages.promote(named, method=method)
        out = model_dir(named)
        assert meta["layout"] == "bi-encoder" and meta["task"] == "sentence-similarity"
        assert {"modules.json", "config.json", "1_Pooling", "2_Normalize"} <= {p.name for p in out.iterdir()}
        args += [str(out), str(run(stsb, method) / "predictions.parquet")]
    done = subprocess.run([sys.executable, "-c", LOADER, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for (method, meta), cosine in zip(promoted.items(), json.loads(done.stdout.splitlines()[-1]), strict=True):
        expected = pd.read_parquet(run(stsb, method) / "predictions.parquet")
        np.testing.assert_allclose(cosine_to_score(np.array(cosine), *meta["score_range"]), expected["prediction"], atol=1e-5)
        metrics = json.loads((run(stsb, method) / "metrics.json").read_text())
        assert spearmanr(expected["label"], cosine).statistic == pytest.approx(metrics["spearman"], abs=1e-6)
    card = (out / "README.md").read_text()
    assert "library_name: sentence-transformers" in card and "similarity_pairwise" in card
    with pytest.raises(DataError, match=r"a bi-encoded pair model.*SentenceTransformer"):
        load_exported(out, promoted["lora"])


def test_the_gate_rescores_a_bi_encoder_champion_and_refuses_a_worse_challenger(tmp_path, tiny_model):
    """Issue 34: a bi-encoder champion is scored again on the test pairs (its Spearman there is its run's
    own), and a challenger trained on shuffled scores is refused; the champion stays byte for byte."""
    import hashlib

    cfg = trained(tmp_path, tiny_model, "stsb", ["full"], **{"method_params.full.lr": 1e-3, "train.max_steps": 24})
    stages.compare(cfg)
    champion = stages.promote(cfg)
    served = model_dir(cfg)
    before = {p: hashlib.sha256(p.read_bytes()).digest() for p in served.rglob("*") if p.is_file()}

    train = tmp_path / "src" / "train.tsv"
    rows = pd.read_csv(train, sep="\t", quoting=csv.QUOTE_NONE)
    rows["score"] = rows["score"].sample(frac=1.0, random_state=0).to_numpy()
    rows.to_csv(train, sep="\t", index=False, quoting=csv.QUOTE_NONE)
    stages.prepare(cfg)  # the test pairs are the same file: both models are judged on them
    stages.train(cfg, "full")
    stages.compare(cfg)
    meta = stages.promote(cfg)

    decision = meta["promotion"]
    assert not decision["promoted"] and "worse than the champion" in decision["reason"], decision
    overall = decision["comparisons"]["overall"]
    assert overall["champion"] == pytest.approx(champion["test_metrics"]["spearman"], abs=1e-6)
    assert overall["challenger"] == pytest.approx(
        json.loads((run(cfg, "full") / "metrics.json").read_text())["spearman"], abs=1e-6)
    assert meta["version"] == 1 and {p: hashlib.sha256(p.read_bytes()).digest()
                                     for p in served.rglob("*") if p.is_file()} == before
