"""Pair regression (STS-B slice) through `dvc repro`, beside another project reproducing at once.
Each project pipeline test is a module of its own, so pytest-xdist spreads them over its workers."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml

from tests.test_pipeline import CELL, SHARED, head_lines, make_repo, ran_stages, sh, smoke_params, task_project

pytestmark = pytest.mark.pipeline


def test_pair_regression_through_dvc_repro_beside_another_project(tmp_path, tiny_model):
    """STS-B pairs through every stage: Spearman is the metric everywhere, baselines included. A
    classification project reproduces at the same time in another directory: neither run disturbs
    the other (locks, caches and temporary files are per project)."""
    files = {"train.tsv": head_lines(SHARED / "stsb/train.tsv", 161), "test.tsv": head_lines(SHARED / "stsb/dev.tsv", 61)}
    task = {"type": "regression", "text_column": "sentence1", "text_pair_column": "sentence2", "label_column": "score"}
    repo = task_project(tmp_path / "stsb", tiny_model, task, {"train": "train.tsv", "test": "test.tsv"}, files)
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
