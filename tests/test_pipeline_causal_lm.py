"""A causal LM (tiny random LLaMA-style decoder, builtin:copy) through `dvc repro` and the Prefect flow;
its `dvc repro` runs at the same time as pair regression's (STS-B slice) in another project."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.test_pipeline import (
    CELL,
    SHARED,
    head_lines,
    make_repo,
    project_env,
    ran_stages,
    sh,
    smoke_params,
    task_project,
)

pytestmark = pytest.mark.pipeline


def _causal_lm_project(path: Path, decoder: str, drift: bool) -> Path:
    """A project instruction-tuning the tiny random LLaMA-style decoder on builtin:copy (300 prompts)
    by full fine-tuning: a copy is learnable from scratch in 150 steps, the most frequent train
    response answers no test prompt. ``drift``: the causal LM's drift columns through Evidently."""
    params = smoke_params(decoder)
    params["methods"], params["method_params"] = ["full"], {"full": {"lr": 1e-2}}
    params["checks"]["drift"] = drift
    params["task"] = {"type": "causal_lm", "max_new_tokens": 8}
    params["data"] = {"source": "builtin:copy", "demo": {"n_samples": 300}, "prepared_dir": "data/prepared"}
    params["model"] = {"name": decoder, "max_length": 32}
    params["train"].update(batch_size=16, max_steps=150, eval_steps=50, logging_steps=10, train_eval_samples=32,
                           precision="fp32")
    return make_repo(path, params)


def _pairs_project(path: Path, tiny_model: str) -> Path:
    """STS-B pairs (160 train, 60 test) scored by regression with full fine-tuning."""
    files = {"train.tsv": head_lines(SHARED / "stsb/train.tsv", 161), "test.tsv": head_lines(SHARED / "stsb/dev.tsv", 61)}
    task = {"type": "regression", "text_column": "sentence1", "text_pair_column": "sentence2", "label_column": "score"}
    repo = task_project(path, tiny_model, task, {"train": "train.tsv", "test": "test.tsv"}, files)
    # STS-B repeats a few pairs ("A man is riding a motorcycle." / "... a horse." twice in these 160)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["validation"] = {"max_leaked_rows": 2, "max_duplicate_fraction": 0.05}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return repo


def test_pair_regression_beside_a_causal_lm_through_dvc_repro_and_the_causal_lm_through_the_flow(tmp_path, tiny_model):
    """STS-B pairs through every stage: Spearman is the metric everywhere, baselines included. The
    causal LM's project reproduces at the same time in another directory: neither run disturbs the
    other (locks, caches and temporary files are per project). The synthetic copy task through every
    stage under both drivers: full fine-tuning's test exact match clears the trivial baseline by a
    bootstrap interval, the flow reproduces `dvc repro`'s numbers, and the promoted model is the run's
    own files (no standard format for decoders yet). One test, so that the projects that are each
    reproduced once share that time instead of a third project reproducing beside STS-B."""
    from ftlab.learning.tiny_decoder import build

    pairs = _pairs_project(tmp_path / "stsb", tiny_model)
    decoder = build(tmp_path / "tiny-llama", "llama")
    # the drift report once, under DVC: the flow calls the same check stage
    projects = {driver: _causal_lm_project(tmp_path / driver, decoder, driver == "dvc") for driver in ("dvc", "prefect")}

    procs = [subprocess.Popen(["dvc", "repro"], cwd=r, env=project_env(r), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for r in (pairs, projects["dvc"])]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert "train@full-42-all" in ran_stages(outputs[0]) and "train@full-42-all" in ran_stages(outputs[1])
    comparison = json.loads((pairs / "reports/comparison.json").read_text())
    assert comparison["task"] == "regression" and comparison["primary_metric"]["name"] == "spearman"
    row = comparison["methods"][0]
    assert row["primary"] == row["spearman"] and {"pearson", "rmse"} <= set(row)
    assert {b["name"] for b in comparison["baselines"]} == {"mean_score", "zero_shot_cosine"}
    assert "Spearman" in (pairs / "reports/comparison.md").read_text()
    history = json.loads((pairs / f"runs/full/{CELL}/history.json").read_text())
    assert history[-1]["validation_primary"] == history[-1]["validation_spearman"]
    assert "up to date" in sh("dvc", "status", cwd=pairs).stdout

    sh(sys.executable, "-m", "ftlab.cli", "pipeline", cwd=projects["prefect"])
    reports, peaks = {}, {}
    for driver, repo in projects.items():
        assert "up to date" in sh("dvc", "status", cwd=repo).stdout, driver
        assert ran_stages(sh("dvc", "repro", cwd=repo).stdout) == set(), driver
        reports[driver] = json.loads((repo / "reports/comparison.json").read_text())
        peaks[driver] = json.loads((repo / f"runs/full/{CELL}/metrics.json").read_text())["cost"]["peak_memory_mb"]
        meta = json.loads((repo / "models/ftlab-model/ftlab.json").read_text())
        assert (meta["task_type"], meta["layout"], meta["method"]) == ("causal_lm", "ftlab", "full"), driver
        card = (repo / "models/ftlab-model/README.md").read_text()
        assert "A causal_lm model fine-tuned from" in card and (repo / "models/ftlab-model/model").is_dir()
    assert "oov_rate" in json.loads((projects["dvc"] / f"reports/checks/full/{CELL}/checks.json").read_text())["drift"]
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
