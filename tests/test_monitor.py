"""The monitor on a real promoted model (tiny, trained on the demo data): verdicts, and the Prefect
deployment that starts retraining on drift."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ftlab import stages
from ftlab.data import DataError
from ftlab.demo import generate_demo
from tests.prefect_server import prefect_server
from tests.test_pipeline import ROOT, make_repo, smoke_params

pytestmark = pytest.mark.pipeline

# Another domain: finance news words, figures, symbols and scripts the demo reviews never use.
FINANCE = ("quarterly revenue rose fell percent shares dividend index bond yield inflation €1,250 Q3 2024 "
           "±0.7% 株価 净利润 💹 📉").split()


def other_domain(n: int, seed: int = 0) -> pd.DataFrame:
    rng = random.Random(seed)
    return pd.DataFrame({"text": [" ".join(rng.choices(FINANCE, k=rng.randint(6, 14))) for _ in range(n)]})


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_model) -> tuple:
    """A promoted tiny model trained on 400 demo reviews; an undrifted and a drifted input file."""
    from ftlab.config import load_config

    root = tmp_path_factory.mktemp("monitor")
    cfg = load_config(None, {
        "model.name": tiny_model, "methods": ["full"], "data.demo.n_samples": 400,
        "data.prepared_dir": str(root / "data"), "train.batch_size": 16, "train.eval_steps": 10,
        "train.max_steps": 10, "train.train_eval_samples": 256, "train.threads": 1, "train.checkpoint_dir": None,
        "train.output_dir": str(root / "runs"), "report.dir": str(root / "reports"), "promote.dir": str(root / "models"),
        "monitor.out_dir": str(root / "monitor")})
    stages.prepare(cfg)
    stages.train(cfg, "full")
    stages.compare(cfg)
    stages.promote(cfg)
    generate_demo(200, 0.05, seed=7).to_csv(root / "demo.csv", index=False)  # with labels: quality too
    other_domain(200).to_csv(root / "finance.csv", index=False)
    return cfg, root


def test_monitor_verdicts(project):
    cfg, root = project
    ok = stages.monitor(cfg, root / "demo.csv")
    assert ok["verdict"] == "ok", ok["reasons"]
    assert ok["signals"]["accuracy"]["drifted"] is False and ok["signals"]["embedding"]["score"] < 0.6
    drift = stages.monitor(cfg, root / "finance.csv")
    assert drift["verdict"] == "drift"
    assert {"oov_rate", "non_letter_share", "embedding"} <= set(drift["drifted"]), drift["reasons"]
    saved = json.loads((root / "monitor/monitor.json").read_text())
    assert saved["verdict"] == "drift" and saved["signals"]["embedding"]["threshold"] == cfg.monitor.embedding_threshold
    assert "<html" in (root / "monitor/monitor.html").read_text()[:2000].lower()


def test_monitor_refuses_too_few_rows(project, tmp_path):
    cfg, _ = project
    other_domain(5).to_csv(tmp_path / "few.csv", index=False)
    with pytest.raises(DataError, match=r"5 rows, fewer than monitor\.min_rows=30"):
        stages.monitor(cfg, tmp_path / "few.csv")


def flow_runs(api: str, deployment: str) -> list:
    """Runs of ``deployment`` that something started (not the ones its schedule lined up)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment])))
    return [r for r in runs if not r.auto_scheduled]


def wait_final(api: str, deployment: str, count: int, timeout: float = 400) -> list:
    """The started runs of ``deployment`` once ``count`` of them exist and all have ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = flow_runs(api, deployment)
        if len(runs) == count and all(r.state is not None and r.state.is_final() for r in runs):
            return runs
        time.sleep(2)
    raise AssertionError(f"{deployment}: {[r.state for r in flow_runs(api, deployment)]} after {timeout}s")


def test_monitor_deployment_retrains_once_on_drift_only(project, tmp_path, tiny_model):
    """Both deployments on a real server and process worker, on their schedules: the monitor, run on
    undrifted and on drifted data at once, starts exactly one run of the nightly training deployment,
    which retrains and promotes its pick in place of the model that was monitored."""
    _, root = project
    params = smoke_params(tiny_model)
    params["methods"], params["method_params"] = ["lora"], {"lora": params["method_params"]["lora"]}
    repo = make_repo(tmp_path / "project", params)
    shutil.copytree(root / "models", repo / "models")
    for name in ("demo.csv", "finance.csv"):
        shutil.copy(root / name, repo / name)
    with prefect_server(repo, tmp_path) as (run, api):
        for deployment in yaml.safe_load((repo / "prefect.yaml").read_text())["deployments"]:
            shown = run("deployment", "inspect", f"{deployment['entrypoint'].split(':')[1]}/{deployment['name']}")
            assert deployment["schedules"][0]["cron"] in shown, shown
        for name in ("demo.csv", "finance.csv"):  # both at once: the worker runs them side by side
            run("deployment", "run", "monitor_data/monitor", "--param", f"input_path={name}")
        monitors = wait_final(api, "monitor", 2, timeout=300)
        assert all(r.state.is_completed() for r in monitors), [r.state for r in monitors]
        (retraining,) = wait_final(api, "nightly", 1)
        assert retraining.state.is_completed(), retraining.state
    assert retraining.parameters["reason"].startswith("data drift: ") and "embedding" in retraining.parameters["reason"]
    assert [m["method"] for m in json.loads((repo / "reports/comparison.json").read_text())["methods"]] == ["lora"]
    assert json.loads((repo / "models/ftlab-model/ftlab.json").read_text())["method"] == "lora"  # was full


def test_monitor_workflow_starts_the_retrain_workflow_on_drift(project, tmp_path):
    """The monitor step of .github/workflows/monitor.yml, run locally with a stand-in for `gh`."""
    _, root = project
    workflow = yaml.safe_load((ROOT / ".github/workflows/monitor.yml").read_text())
    script = next(s["run"] for s in workflow["jobs"]["monitor"]["steps"] if s.get("name", "").startswith("Monitor"))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "promote": {"dir": str(root / "models")}, "monitor": {"input": str(root / "finance.csv")}}))
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/gh").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$GH_ARGS"\n')
    (tmp_path / "bin/gh").chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{Path(sys.executable).parent}:{os.environ['PATH']}",
           "GH_ARGS": str(tmp_path / "gh-args"), "GITHUB_REF_NAME": "main", "GITHUB_STEP_SUMMARY": str(tmp_path / "summary")}
    done = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    args = (tmp_path / "gh-args").read_text().splitlines()
    assert args[:6] == ["workflow", "run", "retrain.yml", "--ref", "main", "-f"]
    assert args[6].startswith("reason=data drift: ") and "embedding" in args[6]
    retrain = yaml.safe_load((ROOT / ".github/workflows/retrain.yml").read_text())[True]  # YAML 1.1: `on` is true
    assert "reason" in retrain["workflow_dispatch"]["inputs"] and retrain["repository_dispatch"]["types"] == ["data-drift"]
