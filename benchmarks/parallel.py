"""Wall time of the default pipeline run serially vs on 2 Dask workers, on this machine.

    python benchmarks/parallel.py

Both runs are `ftlab pipeline` on the repository's params.yaml, each in its own temporary directory
(data, runs and reports included), against one Prefect server started here on a loopback port, so
that neither pays for a temporary server. Serial: `pipeline.task_runner: threads`, one training at a
time on every core. Dask: a local cluster of 2 one-thread worker processes, two trainings at a time,
each on cores / 2 torch threads.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
WORKERS = 2


def prefect_server(home: Path) -> tuple[subprocess.Popen, dict]:
    """A Prefect server on a free loopback port, and the environment that points the flow at it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PREFECT_HOME": str(home),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{env['PREFECT_API_URL']}/health", timeout=2):
                return server, env
        except OSError:
            time.sleep(1)
    server.terminate()
    raise RuntimeError("the Prefect server did not become healthy in 120 s")


def run_pipeline(where: Path, params: dict, pipeline: dict, env: dict) -> float:
    """Seconds of `ftlab pipeline` on ``params`` with ``pipeline`` settings, in a new directory ``where``."""
    params = {**params, "pipeline": {**params["pipeline"], **pipeline}}
    where.mkdir()
    (where / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    start = time.perf_counter()
    subprocess.run(["ftlab", "pipeline", "--params", "params.yaml"], cwd=where, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server, env = prefect_server(Path(tmp) / "prefect-home")
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        try:
            serial = run_pipeline(Path(tmp) / "serial", params, {"task_runner": "threads", "max_parallel": 1}, env)
            dask = run_pipeline(Path(tmp) / "dask", params, {"task_runner": "dask", "max_parallel": WORKERS}, env)
        finally:
            server.terminate()
            server.wait(timeout=60)
    out = {
        "serial_seconds": round(serial, 1),
        "dask_seconds": round(dask, 1),
        "workers": WORKERS,
        "speedup": round(serial / dask, 3),
        "cpu_count": os.cpu_count(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "parallel.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
