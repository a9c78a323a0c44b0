"""A real Prefect server on 127.0.0.1 for the tests that need one: the deployments (`prefect deploy`,
a process worker) and the Dask task runner."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


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
