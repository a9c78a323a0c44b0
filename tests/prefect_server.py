"""A real Prefect server on 127.0.0.1 for the tests that need one: the deployments (`prefect deploy`,
a process worker) and the Dask and Ray task runners."""

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
from pathlib import Path
from typing import NamedTuple


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
def prefect_server(repo: Path, tmp_path: Path) -> Iterator[tuple[Callable[..., str], str]]:
    """A real Prefect server on a free port, the `ftlab` process pool, `prefect deploy --all` and a worker
    in ``repo``; yields ``run(*args)``, the prefect CLI against that server, and the server's API URL."""
    api = f"http://127.0.0.1:{free_port()}/api"
    env = {**os.environ, "PWD": str(repo), "PREFECT_API_URL": api, "PREFECT_HOME": str(tmp_path / "prefect-home"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    prefect = [sys.executable, "-m", "prefect"]

    def run(*args: str, timeout: float = 300) -> str:
        done = subprocess.run([*prefect, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    port = api.split(":")[2].split("/")[0]
    logs = open(tmp_path / "server.log", "w")
    server = subprocess.Popen([*prefect, "server", "start", "--host", "127.0.0.1", "--port", port],
                              env=env, stdout=logs, stderr=subprocess.STDOUT)
    worker = None
    try:
        wait_healthy(api)
        run("work-pool", "create", "ftlab", "--type", "process")
        run("deploy", "--all", "--no-prompt")
        worker = subprocess.Popen([*prefect, "worker", "start", "--pool", "ftlab"], cwd=repo, env=env,
                                  stdout=open(tmp_path / "worker.log", "w"), stderr=subprocess.STDOUT)
        yield run, api
    finally:
        for proc in (worker, server):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:  # a worker can take longer to wind down on a busy machine
                    proc.kill()
                    proc.wait()


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


def flow_on_a_server(repo: Path, tmp_path: Path, env: dict[str, str] | None = None) -> FlowRun:
    """`ftlab pipeline` in ``repo`` against a real Prefect server of its own (a cluster's worker
    processes must all report to one server)."""
    api = f"http://127.0.0.1:{free_port()}/api"
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_HOME": str(tmp_path / "prefect-home"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DVC_NO_ANALYTICS": "1", **(env or {})}
    port = api.split(":")[2].split("/")[0]
    with open(tmp_path / "server.log", "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", port],
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(api)
        flow = subprocess.Popen([sys.executable, "-m", "ftlab.cli", "pipeline", "--params", "params.yaml"], cwd=repo, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out = flow.communicate(timeout=600)[0]
        assert flow.returncode == 0, out[-6000:]
        logs = [e["message"] for e in api_post(api, "logs/filter", {"limit": 200}) if "torch threads, process" in e["message"]]
        runs = {r["name"]: r for r in api_post(api, "task_runs/filter", {}) if r["name"].startswith("train ")}
    finally:
        server.terminate()
        server.wait(timeout=60)
    return FlowRun(out, logs, runs, flow.pid)
