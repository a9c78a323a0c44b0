"""Many runs on a cluster, the Ray way: the flow with ``pipeline.task_runner: ray`` on a real local Ray
instance (started by prefect-ray's runner, 2 CPUs) against a real Prefect server on a loopback port (the
test process's shared one): the runner starts Ray, two Ray worker processes train side by side, the
report has every method."""

from __future__ import annotations

import json
import os
from datetime import datetime

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from ftlab.learning.config import load_config
from tests.prefect_server import flow_on_a_server
from tests.test_pipeline import CELL, METHODS, ROOT, make_repo, smoke_params

pytestmark = pytest.mark.pipeline

pytest.importorskip("prefect_ray")


def test_ray_workers_are_refused_without_a_prefect_server(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "flows"))
    from finetune import task_runner

    cfg = load_config(None, {"pipeline.task_runner": "ray"})
    with temporary_settings(restore_defaults={PREFECT_API_URL}), pytest.raises(
            RuntimeError, match=r"PREFECT_API_URL is not set.*prefect server start"):
        task_runner(cfg, 2)


def test_ray_workers_train_two_methods_in_parallel_like_a_serial_run(tmp_path, tiny_model, prefect_api):
    params = smoke_params(tiny_model)
    del params["train"]["threads"]  # each run picks its share of the machine's cores
    params["pipeline"].update(task_runner="ray", max_parallel=2)
    repo = make_repo(tmp_path / "project", params)
    # RAY_USAGE_STATS_ENABLED=0: no usage report (it would try the network)
    out, logs, runs, flow_pid = flow_on_a_server(repo, prefect_api, {"RAY_USAGE_STATS_ENABLED": "0"})

    assert "Started a local Ray instance" in out, out[-3000:]  # the runner started Ray; it did not fall back
    threads = max(1, (os.cpu_count() or 1) // 2)  # Ray's runs sharing this machine: max_parallel
    assert len(logs) == 2 and all(f": {threads} torch threads" in m for m in logs), logs
    pids = {int(m.split("process ")[1].split()[0]) for m in logs}
    assert len(pids) == 2 and flow_pid not in pids, logs  # two Ray worker processes, not the flow's
    spans = [(datetime.fromisoformat(r["start_time"]), datetime.fromisoformat(r["end_time"])) for r in runs.values()]
    assert len(spans) == 2 and spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1], runs  # they overlapped
    assert json.loads((repo / "reports/comparison.json").read_text())["methods"]

    # each cell trains in its own `ftlab train` process whichever runner starts it: that a parallel run's
    # results equal a serial run's is checked once, for Dask (tests/test_dask.py)
    for method in METHODS:
        assert json.loads((repo / "runs" / method / CELL / "metrics.json").read_text())["cost"]["threads"] == threads
