"""A real Prefect server on 127.0.0.1, one per test process (conftest.py's ``prefect_api``), and what the
tests do on it: the deployments (`prefect deploy`, a process worker) and the Dask and Ray task runners."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_project_src(env: dict[str, str], repo: Path) -> dict[str, str]:
    """``env`` with the project's copy of ftlab first on PYTHONPATH: the flows and workers started in
    ``repo`` run the code its stages depend on, not this checkout's (which other work may be editing)."""
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(repo) / "src"), env.get("PYTHONPATH")]))}


def wait_healthy(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"Prefect server at {url} not healthy after {timeout}s")


@contextmanager
def deployments(repo: Path, tmp_path: Path, api: str) -> Iterator[Callable[..., str]]:
    """The `ftlab` process pool, `prefect deploy --all` and a worker in ``repo``, on the Prefect server at
    ``api`` (the test process's shared one: a server of its own cost 10-16 s of start-up); yields
    ``run(*args)``, the prefect CLI against that server. One test per process deploys: the pool's name
    is the project's."""
    env = with_project_src({**os.environ, "PWD": str(repo), "PREFECT_API_URL": api, "PREFECT_HOME": str(tmp_path / "prefect-home"),
                            "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}, repo)
    prefect = [sys.executable, "-m", "prefect"]

    def run(*args: str, timeout: float = 300) -> str:
        done = subprocess.run([*prefect, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    run("work-pool", "create", "ftlab", "--type", "process")
    run("deploy", "--all", "--no-prompt")
    # PREFECT_WORKER_QUERY_SECONDS: the worker asks for runs every second, not every 10 (its default):
    # each run a test starts, and each one a flow starts, waited 5 s on average to be picked up
    with open(tmp_path / "worker.log", "w") as log:
        worker = subprocess.Popen([*prefect, "worker", "start", "--pool", "ftlab"], cwd=repo,
                                  env={**env, "PREFECT_WORKER_QUERY_SECONDS": "1"}, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield run
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a worker can take longer to wind down on a busy machine
            worker.kill()
            worker.wait()


@contextmanager
def shared_server(home: Path) -> Iterator[str]:
    """A Prefect server for every flow one test process starts; yields its API URL. Each `ftlab
    pipeline` without PREFECT_API_URL starts a temporary server of its own (10-16 s of start-up on
    2 cores, and "Timed out while attempting to connect to ephemeral Prefect API server" when the
    cores are busy): one server per test process saves both."""
    api = f"http://127.0.0.1:{free_port()}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    with open(home / "server.log", "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                   "--port", api.split(":")[2].split("/")[0]], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(api)
        yield api
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def api_post(api: str, path: str, body: dict) -> list[dict]:
    request = urllib.request.Request(f"{api}/{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


class FlowRun(NamedTuple):
    out: str  # the flow's output
    logs: list[str]  # its cells' "torch threads, process" log lines
    runs: dict[str, dict]  # its train task runs by name
    pid: int  # the flow's own process


def flow_on_a_server(repo: Path, api: str, env: dict[str, str] | None = None) -> FlowRun:
    """`ftlab pipeline` in ``repo`` against the Prefect server at ``api`` (a cluster's worker processes
    must all report to one server: the test process's shared one, where earlier tests' flows ran too).
    Its task runs and logs are told from theirs by the flow runs that started after it was launched:
    the tests of one process run one at a time."""
    env = with_project_src({**os.environ, "PREFECT_API_URL": api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                            "DVC_NO_ANALYTICS": "1", **(env or {})}, repo)
    launched = datetime.now(timezone.utc).isoformat()
    flow = subprocess.Popen([sys.executable, "-m", "ftlab.cli", "pipeline", "--params", "params.yaml"], cwd=repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = flow.communicate(timeout=600)[0]
    assert flow.returncode == 0, out[-6000:]
    flows = [r["id"] for r in api_post(api, "flow_runs/filter", {"flow_runs": {"start_time": {"after_": launched}}})]
    assert flows, f"no flow run on {api} since {launched}"  # the pipeline and its stages' subflow
    tasks = api_post(api, "task_runs/filter", {"flow_runs": {"id": {"any_": flows}}})
    runs = {r["name"]: r for r in tasks if r["name"].startswith("train ")}
    logs = [e["message"] for e in api_post(api, "logs/filter", {"logs": {"task_run_id": {"any_": [r["id"] for r in tasks]}},
                                                                "limit": 200})
            if "torch threads, process" in e["message"]]
    return FlowRun(out, logs, runs, flow.pid)
