"""A causal LM (tiny random LLaMA-style decoder, builtin:copy) through `dvc repro` and the Prefect flow."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.test_pipeline import CELL, make_repo, ran_stages, sh, smoke_params

pytestmark = pytest.mark.pipeline


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
    from ftlab.learning.tiny_decoder import build

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
