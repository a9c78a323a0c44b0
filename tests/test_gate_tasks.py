"""The promotion gate beyond single-text classification (issue 34): an NER model trained briefly with a
tiny BERT on real CoNLL-2003 sentences, promoted, then challenged by the same run trained on shuffled
tags. The champion is scored again on the test rows (its entity F1 there is its run's own) and the
worse challenger is refused, the served model left byte for byte. The NER export itself loads whole in
plain transformers. (A bi-encoder champion against a challenger trained on shuffled scores:
tests/test_bi_encoder.py; a bi-encoded pair classifier's re-scoring: tests/test_predict_bi.py.)"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from ftlab import stages
from ftlab.core import layout
from ftlab.serving.promote import model_dir
from tests.test_predict_tags import promoted
from tests.test_tasks import DATA, conll_sentences


def digests(directory: Path) -> dict[Path, bytes]:
    return {p: hashlib.sha256(p.read_bytes()).digest() for p in directory.rglob("*") if p.is_file()}


def assert_refused(meta: dict, champion: dict, run: Path, metric: str, served: Path, before: dict[Path, bytes]) -> None:
    """Refused as worse; the champion's re-scored metric its run's test metric, the challenger's its own;
    the served model untouched."""
    decision = meta["promotion"]
    assert not decision["promoted"] and "worse than the champion" in decision["reason"], json.dumps(decision)
    assert decision["metric"] == metric
    overall = decision["comparisons"]["overall"]
    assert overall["champion"] == pytest.approx(champion["test_metrics"][metric], abs=1e-6)
    assert overall["challenger"] == pytest.approx(json.loads((run / "metrics.json").read_text())[metric], abs=1e-6)
    assert overall["champion"] > overall["challenger"]
    assert meta["version"] == 1 and digests(served) == before


def conll(root: Path, train: int) -> dict[str, str]:
    """``train`` CoNLL-2003 training sentences; 32 validation and 64 test sentences from dev.txt (those with
    tags the training ones have). More than other tests use: a tiny BERT needs them to find any entity."""
    sentences = conll_sentences(DATA / "conll2003" / "train.txt", train)
    dev = conll_sentences(DATA / "conll2003" / "dev.txt", 96, {t for s in sentences for _, t in s})
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, part in {"train": sentences, "validation": dev[:32], "test": dev[32:]}.items():
        out[split] = str(root / f"{split}.txt")
        Path(out[split]).write_text("\n\n".join("\n".join(f"{w} X {t}" for w, t in s) for s in part) + "\n")
    return out


def shuffle_conll_tags(path: Path) -> None:
    """Every tag of the file moved to another token (seeded): the same tags, in no relation to the words."""
    sentences = [[line.split(" ") for line in block.splitlines()] for block in path.read_text().strip().split("\n\n")]
    tags = [t for s in sentences for _, _, t in s]
    random.Random(0).shuffle(tags)
    it = iter(tags)
    path.write_text("\n\n".join("\n".join(f"{w} {x} {next(it)}" for w, x, _ in s) for s in sentences) + "\n")


def test_ner_export_loads_in_transformers_and_the_gate_refuses_shuffled_tags(tmp_path, tiny_model):
    """The promoted NER model/ is transformers' BertForTokenClassification: from_pretrained loads every
    weight (none missing, none new) and gives the run's logits (1e-5); ftlab re-scores it as the
    champion and refuses a challenger trained on shuffled tags, on entity F1."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from ftlab.analysis.runs import load_run

    source = conll(tmp_path / "src", 480)
    # the plain tiny BERT: the wide one (tiny_bert) found no entity in 120 steps (entity F1 0); this one 0.36
    cfg, expected = promoted(tmp_path, tiny_model, {"type": "token_classification"}, source,
                             **{"train.max_steps": 120, "train.eval_steps": 40, "method_params.full.lr": 3e-3})
    champion = json.loads((model_dir(cfg) / "ftlab.json").read_text())
    run = layout.run_dir(cfg, stages.cell(cfg, "full"))
    model, info = AutoModelForTokenClassification.from_pretrained(str(model_dir(cfg) / "model"), output_loading_info=True)
    assert type(model).__name__ == "BertForTokenClassification" and champion["model_class"] == "AutoModelForTokenClassification"
    assert not any(info.values()), info  # no missing (newly initialized), unexpected or mismatched weights
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir(cfg) / "tokenizer"))
    batch = tokenizer([" ".join(words) for words in expected["tokens"]], padding=True, truncation=True, max_length=64,
                      return_tensors="pt")
    with torch.inference_mode():
        theirs, own = model.eval()(**batch).logits, load_run(run)[1](**batch).logits
    assert own.std() > 0.05  # logits that differ by token and tag: a weight left out would show
    np.testing.assert_allclose(theirs.numpy(), own.numpy(), atol=1e-5)

    before = digests(model_dir(cfg))
    shuffle_conll_tags(Path(source["train"]))
    stages.prepare(cfg)  # the test sentences are the same file: both models are judged on them
    stages.train(cfg, "full")
    stages.compare(cfg)
    assert_refused(stages.promote(cfg), champion, run, "f1", model_dir(cfg), before)
