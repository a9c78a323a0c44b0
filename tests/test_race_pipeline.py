"""The race under both drivers, on real DVC and Prefect: a crippled method (lora at lr 1e-9) is
eliminated at the first rung, its cell writes an eliminated record, the survivor goes on from the
race's checkpoint, both drivers decide the same, and afterwards neither has anything to do (a second
flow run is left out: its Prefect start alone is 15-25 s; its skip rule and race stage are checked)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from ftlab import stages
from ftlab.learning.config import load_config
from ftlab.progress import progress
from tests.conftest import toy_reviews
from tests.test_pipeline import CELL, make_repo, settled, sh, smoke_params

pytestmark = pytest.mark.pipeline


def race_params(tiny_model: str) -> dict:
    """full learns the toy data in 30 steps (lr 1e-2); lora at lr 1e-9 cannot. One rung, at half the
    budget: the evaluation at step 20."""
    params = smoke_params(tiny_model)
    params["data"]["source"] = "data/raw/data.csv"
    params["train"].update(max_steps=30, eval_steps=10, logging_steps=10, batch_size=16, early_stopping_patience=0)
    params["method_params"] = {"full": {"lr": 1e-2}, "lora": {"lr": 1e-9}}
    params["race"] = {"enabled": True, "rungs": [0.5], "eta": 2}
    return params


def record(repo: Path, method: str) -> dict:
    return json.loads((repo / f"runs/{method}/{CELL}/metrics.json").read_text())


def test_a_crippled_method_is_eliminated_at_the_first_rung_under_both_drivers(tmp_path, tiny_model):
    repos = {}
    for driver, command in (("dvc", ("dvc", "repro")), ("flow", (sys.executable, "-m", "ftlab.cli", "pipeline"))):
        repo = make_repo(tmp_path / driver, race_params(tiny_model))
        toy_reviews(240).to_csv(repo / "data/raw/data.csv", index=False)
        sh(*command, cwd=repo)
        repos[driver] = repo
    decisions = {d: json.loads((r / "reports/race/decisions.json").read_text()) for d, r in repos.items()}
    assert decisions["dvc"] == decisions["flow"]  # same cells, same validation scores, same decisions
    [rung] = decisions["dvc"]["sizes"][0]["rungs"]
    lora = next(r for r in rung["methods"] if r["method"] == "lora")
    assert (rung["leader"], lora["decision"], lora["stop_steps"]) == ("full", "eliminated", [20])

    for driver, repo in repos.items():
        eliminated, survivor = record(repo, "lora"), record(repo, "full")
        assert (eliminated["status"], eliminated["race"]["rung"], eliminated["steps"]) == ("eliminated", 1, 20), driver
        assert (survivor["status"], survivor["steps"]) == ("survivor", 30), driver
        assert survivor["race"]["trained_from"] == 20, driver  # the race's 20 steps were not trained again
        comparison = json.loads((repo / "reports/comparison.json").read_text())
        assert [m["method"] for m in comparison["methods"]] == ["full"], driver  # lora left out of the pick
        [row] = comparison["eliminated"]
        assert (row["method"], row["rung"], row["steps"], row["steps_saved"]) == ("lora", 1, 20, 10), driver
        assert "## Eliminated" in (repo / "reports/comparison.md").read_text()

    for repo in repos.values():  # dvc status, a dvc repro and the flow's skip rule: nothing to train
        settled(repo)
    written = repos["flow"] / "reports/race/decisions.json"
    stamp, cwd = written.stat().st_mtime_ns, Path.cwd()
    os.chdir(repos["flow"])  # the race stage the flow calls, again: decided from the current cells already
    try:
        cfg = load_config(Path("params.yaml"))
        assert stages.race(cfg) == decisions["flow"]
        assert progress(cfg).fraction == 1.0  # every cell done, the eliminated one included
    finally:
        os.chdir(cwd)
    assert written.stat().st_mtime_ns == stamp  # skipped: nothing rewritten
