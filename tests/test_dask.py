"""Many runs on a cluster: the flow on a real local Dask cluster (2 worker processes × 1 thread)
against a real Prefect server on a loopback port (the test process's shared one), compared with the
same cells trained serially."""

from __future__ import annotations

import json
import os
from datetime import datetime

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from typer.testing import CliRunner

from ftlab.cli import app
from ftlab.learning.config import load_config
from tests.prefect_server import flow_on_a_server
from tests.test_pipeline import CELL, METHODS, ROOT, make_repo, smoke_params

pytestmark = pytest.mark.pipeline

pytest.importorskip("prefect_dask")


def test_cluster_workers_are_refused_without_a_prefect_server(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "flows"))
    from finetune import task_runner

    cfg = load_config(None, {"pipeline.task_runner": "dask"})
    with temporary_settings(restore_defaults={PREFECT_API_URL}), pytest.raises(
            RuntimeError, match=r"PREFECT_API_URL is not set.*prefect server start"):
        task_runner(cfg, 2)


def test_dask_workers_train_two_methods_in_parallel_like_a_serial_run(tmp_path, tiny_model, prefect_api, monkeypatch):
    params = smoke_params(tiny_model)
    del params["train"]["threads"]  # each run picks its share of the worker machine's cores
    params["pipeline"].update(task_runner="dask", max_parallel=2)
    repo = make_repo(tmp_path / "project", params)
    _, logs, runs, flow_pid = flow_on_a_server(repo, prefect_api)

    threads = max(1, (os.cpu_count() or 1) // 2)  # the cores shared by the two workers on this machine
    assert len(logs) == 2 and all(f": {threads} torch threads" in m for m in logs), logs
    pids = {int(m.split("process ")[1].split()[0]) for m in logs}
    assert len(pids) == 2 and flow_pid not in pids, logs  # two worker processes, not the flow's
    spans = [(datetime.fromisoformat(r["start_time"]), datetime.fromisoformat(r["end_time"])) for r in runs.values()]
    assert len(spans) == 2 and spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1], runs  # they overlapped
    assert json.loads((repo / "reports/comparison.json").read_text())["methods"]

    # the same cells, one after the other in one process (this one: a process of its own paid seconds of
    # imports), on the prepared data of the flow run
    monkeypatch.chdir(repo)
    done = CliRunner().invoke(app, ["train", "-S", "train.output_dir=serial", "-S", f"train.threads={threads}"])
    assert done.exit_code == 0, f"{done.output[-3000:]}{done.exception!r}"
    for method in METHODS:
        parallel, serial = (json.loads((repo / d / method / CELL / "metrics.json").read_text()) for d in ("runs", "serial"))
        assert parallel.pop("cost")["threads"] == serial.pop("cost")["threads"] == threads
        assert parallel == serial, method
        assert (repo / "runs" / method / CELL / "history.json").read_text() == (repo / "serial" / method / CELL / "history.json").read_text()
