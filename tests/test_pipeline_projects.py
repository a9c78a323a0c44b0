"""Projects other than the default one through the real pipeline drivers: pair regression through
`dvc repro` beside another project reproducing at once, NER through the Prefect flow, a causal LM
through both. In a module of its own so that pytest-xdist runs it beside tests/test_pipeline.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from tests.test_pipeline import CELL, ROOT, make_repo, ran_stages, sh, smoke_params

SHARED = ROOT.parent / "shared" / "data"


def _task_project(tmp_path: Path, tiny_model: str, task: dict, source: dict, files: dict[str, str]) -> Path:
    """A project on a slice of a real dataset: ``files`` maps a file name to the lines to copy."""
    params = smoke_params(tiny_model)
    params["methods"], params["method_params"] = ["full"], {"full": {"lr": 1e-3}}
    params["task"] = task
    params["data"] = {"source": source, "validation_size": 0.2, "prepared_dir": "data/prepared"}
    params["train"].update(max_steps=4, eval_steps=2)
    repo = make_repo(tmp_path / "project", params)
    for name, text in files.items():
        (repo / name).write_text(text)
    return repo


def _head(path: Path, lines: int) -> str:
    with open(path, encoding="utf-8") as f:
        return "".join(next(f) for _ in range(lines))


def test_pair_regression_through_dvc_repro_beside_another_project(tmp_path, tiny_model):
    """STS-B pairs through every stage: Spearman is the metric everywhere, baselines included. A
    classification project reproduces at the same time in another directory: neither run disturbs
    the other (locks, caches and temporary files are per project)."""
    files = {"train.tsv": _head(SHARED / "stsb/train.tsv", 161), "test.tsv": _head(SHARED / "stsb/dev.tsv", 61)}
    task = {"type": "regression", "text_column": "sentence1", "text_pair_column": "sentence2", "label_column": "score"}
    repo = _task_project(tmp_path / "stsb", tiny_model, task, {"train": "train.tsv", "test": "test.tsv"}, files)
    # STS-B repeats a few pairs ("A man is riding a motorcycle." / "... a horse." twice in these 160)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["validation"] = {"max_leaked_rows": 2, "max_duplicate_fraction": 0.05}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    other = smoke_params(tiny_model)
    other.update(seed=2, seeds=[2], methods=["lora"])
    other["method_params"] = {"lora": other["method_params"]["lora"]}
    beside = make_repo(tmp_path / "demo", other)

    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    procs = [subprocess.Popen(["dvc", "repro"], cwd=r, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in (repo, beside)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert "train@full-42-all" in ran_stages(outputs[0])
    comparison = json.loads((repo / "reports/comparison.json").read_text())
    assert comparison["task"] == "regression" and comparison["primary_metric"]["name"] == "spearman"
    row = comparison["methods"][0]
    assert row["primary"] == row["spearman"] and {"pearson", "rmse"} <= set(row)
    assert {b["name"] for b in comparison["baselines"]} == {"mean_score", "zero_shot_cosine"}
    assert "Spearman" in (repo / "reports/comparison.md").read_text()
    history = json.loads((repo / f"runs/full/{CELL}/history.json").read_text())
    assert history[-1]["validation_primary"] == history[-1]["validation_spearman"]
    assert yaml.safe_load((beside / "runs/lora/s2-nall/config.yaml").read_text())["seed"] == 2
    assert json.loads((beside / "reports/comparison.json").read_text())["methods"][0]["method"] == "lora"
    for project in (repo, beside):
        assert "up to date" in sh("dvc", "status", cwd=project).stdout, project


def test_ner_through_the_prefect_flow(tmp_path, tiny_model):
    """CoNLL-2003 sentences through the Prefect flow: entity F1 from training to the report."""
    files = {"train.conll": _head(SHARED / "conll2003/train.txt", 4000), "test.conll": _head(SHARED / "conll2003/dev.txt", 1500)}
    task = {"type": "token_classification"}
    repo = _task_project(tmp_path, tiny_model, task, {"train": "train.conll", "test": "test.conll"}, files)
    # CoNLL repeats datelines and table rows ("BEIJING 1996-08-22"), and a slice has rare tags
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["validation"] = {"max_duplicate_fraction": 0.2, "max_leaked_rows": 100, "min_examples_per_class": 1}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(sys.executable, "-m", "ftlab.cli", "pipeline", "--params", "params.yaml", cwd=repo)
    comparison = json.loads((repo / "reports/comparison.json").read_text())
    assert comparison["task"] == "token_classification" and comparison["primary_metric"]["name"] == "f1"
    assert [b["name"] for b in comparison["baselines"]] == ["all_O"] and comparison["baselines"][0]["value"] == 0.0
    predictions = pd.read_parquet(repo / f"runs/full/{CELL}/predictions.parquet")
    assert (predictions["tokens"].map(len) == predictions["prediction"].map(len)).all()
    assert "up to date" in sh("dvc", "status", cwd=repo).stdout
    # a re-run (after a failure, say) skips a cell whose run is complete for the same config
    finished = (repo / f"runs/full/{CELL}/metrics.json").stat().st_mtime_ns
    out = sh(sys.executable, "-m", "ftlab.cli", "pipeline", "--params", "params.yaml", cwd=repo)
    assert (repo / f"runs/full/{CELL}/metrics.json").stat().st_mtime_ns == finished
    assert "finished run found" in out.stdout + out.stderr


def _causal_lm_project(path: Path, decoder: str) -> Path:
    """A project instruction-tuning the tiny random LLaMA-style decoder on builtin:copy (300 prompts)
    by full fine-tuning: a copy is learnable from scratch in 150 steps, the most frequent train
    response answers no test prompt."""
    params = smoke_params(decoder)
    params["methods"], params["method_params"] = ["full"], {"full": {"lr": 1e-2}}
    params["task"] = {"type": "causal_lm", "max_new_tokens": 8}
    params["data"] = {"source": "builtin:copy", "demo": {"n_samples": 300}, "prepared_dir": "data/prepared"}
    params["model"] = {"name": decoder, "max_length": 32}
    params["train"].update(batch_size=16, max_steps=150, eval_steps=50, logging_steps=10, train_eval_samples=32,
                           precision="fp32")
    return make_repo(path, params)


def test_causal_lm_through_dvc_repro_and_the_prefect_flow(tmp_path):
    """The synthetic copy task through every stage under both drivers: full fine-tuning's test exact
    match clears the trivial baseline by a bootstrap interval, the flow reproduces `dvc repro`'s
    numbers, and the promoted model is the run's own files (no standard format for decoders yet)."""
    from ftlab.tiny_decoder import build

    decoder = build(tmp_path / "tiny-llama", "llama")
    reports, peaks = {}, {}
    for driver, cmd in {"dvc": ["dvc", "repro"], "prefect": [sys.executable, "-m", "ftlab.cli", "pipeline"]}.items():
        repo = _causal_lm_project(tmp_path / driver, decoder)
        sh(*cmd, cwd=repo)
        assert "up to date" in sh("dvc", "status", cwd=repo).stdout, driver
        assert ran_stages(sh("dvc", "repro", cwd=repo).stdout) == set(), driver
        reports[driver] = json.loads((repo / "reports/comparison.json").read_text())
        peaks[driver] = json.loads((repo / f"runs/full/{CELL}/metrics.json").read_text())["cost"]["peak_memory_mb"]
        meta = json.loads((repo / "models/ftlab-model/ftlab.json").read_text())
        assert (meta["task_type"], meta["layout"], meta["method"]) == ("causal_lm", "ftlab", "full"), driver
        card = (repo / "models/ftlab-model/README.md").read_text()
        assert "A causal_lm model fine-tuned from" in card and (repo / "models/ftlab-model/model").is_dir()
    comparison = reports["dvc"]
    assert comparison["task"] == "causal_lm" and comparison["primary_metric"]["name"] == "exact_match"
    (baseline,) = comparison["baselines"]
    assert baseline["name"] == "most_frequent_response" and baseline["value"] == 0.0
    (row,) = comparison["methods"]
    assert row["method"] == "full" and row["primary"] == row["exact_match"] >= 0.15
    # measurably above: the paired bootstrap's 95% interval of the difference excludes 0
    assert baseline["best_vs_baseline"]["ci_low"] > 0 and baseline["best_vs_baseline"]["verdict"] == "better"
    # the same data, seed and steps in both: the same answers
    assert reports["prefect"]["methods"][0]["exact_match"] == row["exact_match"]
    # and the same peak memory: the flow trains each cell in a process of its own, not in the flow's,
    # which holds Prefect, Great Expectations and what earlier cells freed
    assert abs(peaks["prefect"] - peaks["dvc"]) <= 0.1 * peaks["dvc"], peaks
