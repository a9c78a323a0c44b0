"""Promote and predict on real tiny runs: the exported model loads without ftlab and reproduces the run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ftlab import stages
from ftlab.core.layout import run_dir
from ftlab.core.record import read_record
from ftlab.data.prepare import DataError
from ftlab.serving.predict import predict_file
from ftlab.serving.promote import PromoteError, model_dir
from tests.frozen_heap import frozen_heap, unfrozen_after_module  # noqa: F401  (autouse: tests on a frozen heap)

# Runs in a process that cannot import ftlab: the standard library alone loads the export.
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
from transformers import pipeline

results = []
for model_dir, predictions in zip(sys.argv[1::2], sys.argv[2::2]):
    texts = pd.read_parquet(predictions)["text"].tolist()
    if model_dir.endswith("sentence-transformers"):
        model = SentenceTransformer(model_dir, device="cpu")
        probs = model.encode(texts, batch_size=16, convert_to_tensor=True).softmax(-1)
        labels = [model[0].auto_model.config.id2label[int(i)] for i in probs.argmax(-1)]
        probs = probs.tolist()
    else:
        classify = pipeline("text-classification", model=model_dir, device="cpu")
        out = classify(texts, batch_size=16, truncation=True, top_k=None)
        labels = [max(r, key=lambda x: x["score"])["label"] for r in out]
        names = classify.model.config.id2label
        probs = [[{x["label"]: x["score"] for x in r}[names[i]] for i in range(len(names))] for r in out]
    results.append({"labels": labels, "probs": probs})
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def promoted(tmp_path_factory, tiny_model, toy_csv) -> dict:
    """Promoted models of real tiny runs (fp32): mean pooling + LoRA (merged), cls + full, cls + prompt tuning."""
    from ftlab.learning.config import load_config

    root = tmp_path_factory.mktemp("promote")
    out = {}
    for pooling, methods in (("mean", ["lora"]), ("cls", ["full", "prompt_tuning"])):
        cfg = load_config(None, {
            "data.source": str(toy_csv), "data.prepared_dir": str(root / pooling / "data"), "model.name": tiny_model,
            "model.pooling": pooling, "methods": methods, "train.batch_size": 16, "train.eval_steps": 4,
            "train.max_steps": 8, "train.train_eval_samples": 64, "train.threads": 1, "train.precision": "fp32",
            "train.output_dir": str(root / pooling / "runs"), "train.checkpoint_dir": None,
            "report.dir": str(root / pooling / "reports"), "promote.dir": str(root / pooling / "models")})
        stages.prepare(cfg)
        for m in methods:
            stages.train(cfg, m)
        stages.compare(cfg)
        for m in methods:
            named = cfg.model_copy(update={"promote": cfg.promote.model_copy(update={"name": f"model-{m}"})})
            meta = stages.promote(named, method=m)
            out[f"{pooling}-{m}"] = (named, meta, model_dir(named), run_dir(cfg, stages.cell(cfg, m)))
    return out


def test_standard_library_reproduces_the_runs_test_predictions_without_ftlab(promoted, tmp_path):
    """sentence-transformers loads the mean-pooling export, transformers.pipeline the cls one (one process)."""
    cases = {"mean-lora": "sentence-transformers", "cls-full": "transformers"}
    args = []
    for key, layout in cases.items():
        _, meta, model, run = promoted[key]
        assert meta["layout"] == layout
        (tmp_path / layout).symlink_to(model)  # the loader picks the library by the name
        args += [str(tmp_path / layout), str(run / "predictions.parquet")]
    done = subprocess.run([sys.executable, "-c", LOADER, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for key, got in zip(cases, json.loads(done.stdout.splitlines()[-1]), strict=True):
        _, meta, _, run = promoted[key]
        expected = pd.read_parquet(run / "predictions.parquet")
        assert got["labels"] == [meta["labels"][i] for i in expected["prediction"]]  # argmax identical, fp32 both
        np.testing.assert_allclose(got["probs"], expected[[f"prob_{n}" for n in meta["labels"]]], atol=1e-5)


def test_model_card_and_metadata(promoted):
    _, _, model, _ = promoted["mean-lora"]
    card = (model / "README.md").read_text()
    front = card.split("---\n")[1]
    import yaml

    data = yaml.safe_load(front)
    assert data["library_name"] == "sentence-transformers" and data["pipeline_tag"] == "text-classification"
    assert data["ftlab"]["method"] == "lora" and data["ftlab"]["data_fingerprint"]["train_sha256"]
    assert data["ftlab"]["verdict"].startswith("Pick ")
    assert "SentenceTransformer(" in card and "comparison.md" in card
    meta = json.loads((model / "ftlab.json").read_text())
    assert meta["labels"] == ["neg", "pos"]
    # the monitor's reference and baseline: the run's held-out test rows and accuracy, not training rows
    test = pd.read_parquet(Path(meta["run"]) / "predictions.parquet")
    assert len(test) < 1000
    pd.testing.assert_frame_equal(pd.read_parquet(model / "reference.parquet"), test)
    run_metrics = json.loads((Path(meta["run"]) / "metrics.json").read_text())
    assert meta["test_metrics"] == {"accuracy": run_metrics["accuracy"], "macro_f1": run_metrics["macro_f1"]}


def test_model_card_says_what_the_test_number_was_measured_on(promoted):
    """A user file: the test split is a held-out part of that file. The built-in demo: the card says the
    data is synthetic template reviews and that real text will score lower."""
    from ftlab.learning.config import load_config
    from ftlab.serving.card import model_card

    cfg, meta, model, run = promoted["mean-lora"]
    card = " ".join((model / "README.md").read_text().split())
    n_test = json.loads((run / "metrics.json").read_text())["n_test"]
    assert f"The test set is a held-out part ({n_test:,} examples) of `{cfg.data.source}`" in card, card
    assert "The number holds for data like it" in card and "synthetic" not in card
    demo = load_config(None, {"data.demo.n_samples": 1000})  # data.source: builtin:demo, the default
    comparison = json.loads((cfg.report.dir / "comparison.json").read_text())
    card = " ".join(model_card(demo, meta, read_record(run), comparison, model).split())
    assert "**The test data is synthetic.** `builtin:demo` is ftlab's built-in demo set: 1,000 short review-like" in card
    assert "5% of labels flipped on purpose" in card and "expect real sentences to score lower" in card, card
    assert "held-out part of `" not in card


def test_promote_prints_no_load_report_for_the_unused_pooler(promoted, tmp_path):
    """The sentence-transformers export loads the encoder with a [CLS] pooler it never had: transformers'
    LOAD REPORT ("pooler.dense.* MISSING ... Consider training") stays out; one INFO line says why."""
    from ftlab.learning.config import dump_config

    cfg, _, _, _ = promoted["mean-lora"]
    params = tmp_path / "params.yaml"
    params.write_text(dump_config(cfg))
    out = subprocess.run([sys.executable, "-m", "ftlab.cli", "promote", "--params", str(params), "--method", "lora",
                          "-S", "promote.name=from-cli"], capture_output=True, text=True, cwd=tmp_path)
    output = out.stdout + out.stderr
    assert out.returncode == 0, output
    assert "promoted lora" in out.stdout and "sentence-transformers model" in out.stdout, output
    assert "LOAD REPORT" not in output and "MISSING" not in output and "Consider training" not in output, output
    assert "were not sharded" not in output, output  # transformers' tensor-parallel plan check, a warning at load
    assert "pooler (pooler.*) gets untrained weights; mean pooling does not use it" in " ".join(output.split()), output
    assert (cfg.promote.dir / "from-cli" / "2_Dense" / "model.safetensors").is_file()


def test_ftlab_predict_streams_chunks_in_input_order(promoted, tmp_path):
    """Every layout, the unmergeable prompt tuning (base + adapter) too, scores like its run did."""
    for key in ("mean-lora", "cls-prompt_tuning"):
        _, meta, model, run = promoted[key]
        expected = pd.read_parquet(run / "predictions.parquet")
        src = expected[["text"]].assign(row=range(len(expected)))
        src.to_parquet(tmp_path / "in.parquet")
        # fp32 like the runs: "auto" is bf16 on a CPU with AVX512-BF16, 1e-4 from the fp32 probabilities
        result = predict_file(model, tmp_path / "in.parquet", tmp_path / f"{key}.csv", chunk_rows=7, batch_size=5,
                              precision="fp32")
        out = pd.read_csv(tmp_path / f"{key}.csv")
        assert result["rows"] == len(src) and out["row"].tolist() == src["row"].tolist()
        assert out["prediction"].tolist() == [meta["labels"][i] for i in expected["prediction"]]
        np.testing.assert_allclose(out["prob_pos"], expected["prob_pos"], atol=1e-5)
    assert meta["layout"] == "peft" and (model / "adapter" / "adapter_config.json").is_file()


def test_predict_error_names_the_line_and_keeps_the_earlier_output(promoted, tmp_path):
    _, _, model, _ = promoted["cls-full"]
    output = tmp_path / "out.jsonl"
    output.write_text("earlier result\n")
    bad = tmp_path / "in.csv"
    pd.DataFrame({"text": ["fine", "also fine", None, "ok"]}).to_csv(bad, index=False)
    with pytest.raises(DataError, match=r"in\.csv: 1 empty or missing text.*row 2 \(line 4\)"):
        predict_file(model, bad, output, chunk_rows=2)
    assert output.read_text() == "earlier result\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.jsonl"]


def test_predict_scores_the_texts_training_would_read(promoted, tmp_path):
    """A NUL byte, NA and null are texts, as prepare reads them: scored whole, written back unchanged
    (pandas cut the first at the NUL and refused the other two as missing)."""
    _, _, model, _ = promoted["cls-full"]
    texts = ["bad\x00 film", "NA", "null", "bad"]
    (tmp_path / "in.csv").write_text("text\n" + "".join(f"{t}\n" for t in texts))
    result = predict_file(model, tmp_path / "in.csv", tmp_path / "out.jsonl", precision="fp32")
    out = pd.read_json(tmp_path / "out.jsonl", lines=True, dtype=False)
    assert result["rows"] == 4 and out["text"].tolist() == texts
    assert out["prob_pos"][0] != out["prob_pos"][3]  # "bad\x00 film" is not scored as "bad"


def test_promote_needs_a_comparison_and_a_trained_cell(promoted, tmp_path):
    cfg, _, _, _ = promoted["mean-lora"]
    with pytest.raises(PromoteError, match="no cell method=full"):
        stages.promote(cfg, method="full")
    empty = cfg.model_copy(update={"report": cfg.report.model_copy(update={"dir": tmp_path})})
    with pytest.raises(PromoteError, match=r"comparison\.json not found"):
        stages.promote(empty)
