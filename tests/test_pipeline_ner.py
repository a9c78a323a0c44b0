"""NER (CoNLL-2003 slice) through the Prefect flow, and the flow re-run that skips finished cells."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest
import yaml

from ftlab.training.identity import data_digest
from tests.test_pipeline import CELL, SHARED, head_lines, sh, task_project

pytestmark = pytest.mark.pipeline


def test_ner_through_the_prefect_flow(tmp_path, tiny_model):
    """CoNLL-2003 sentences through the Prefect flow: entity F1 from training to the report."""
    files = {"train.conll": head_lines(SHARED / "conll2003/train.txt", 4000), "test.conll": head_lines(SHARED / "conll2003/dev.txt", 1500)}
    task = {"type": "token_classification"}
    repo = task_project(tmp_path, tiny_model, task, {"train": "train.conll", "test": "test.conll"}, files)
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
    assert "oov_rate" in json.loads((repo / f"reports/checks/full/{CELL}/checks.json").read_text())["drift"]
    assert "up to date" in sh("dvc", "status", cwd=repo).stdout
    # (that a re-run skips a cell whose identity is unchanged is tests/test_pipeline.py's, for the flow too)
    run = repo / f"runs/full/{CELL}"
    finished = (run / "metrics.json").stat().st_mtime_ns
    # new data under the same params retrains the cell (it used to be skipped, then recorded as current),
    # and the promotion gate judges the new run against the NER model serving (micro-F1 per sentence)
    old = json.loads((run / "identity.json").read_text())["data_sha256"]
    (repo / "train.conll").write_text(head_lines(SHARED / "conll2003/train.txt", 3000))
    params["checks"]["drift"] = False  # the first run drew the NER drift report; a checks setting retrains nothing
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = sh(sys.executable, "-m", "ftlab.cli", "pipeline", "--params", "params.yaml", cwd=repo)
    assert "finished run found" not in out.stdout + out.stderr
    assert (run / "metrics.json").stat().st_mtime_ns != finished
    assert json.loads((run / "identity.json").read_text())["data_sha256"] == data_digest(repo / "data/prepared") != old
    assert json.loads((repo / "reports/promotion.json").read_text())["comparisons"]["overall"]["rows"] > 0
    assert "up to date" in sh("dvc", "status", cwd=repo).stdout
    assert "Running stage" not in sh("dvc", "repro", cwd=repo).stdout  # both drivers agree
