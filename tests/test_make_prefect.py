"""`make server` and `make worker`, the README's way to run the Prefect deployments: the server logs no
telemetry traceback, and one SIGINT (Ctrl-C) stops each, even when started as a script's `&` starts a
command (SIGINT ignored), where `prefect worker start` itself needed a second signal, a SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.prefect_server import free_port, wait_healthy

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent  # the venv running the tests: make must not reinstall it


def make(target: str, port: int, env: dict, log: Path) -> subprocess.Popen:
    """``make TARGET`` in a session of its own (its process group gets the signal, as from Ctrl-C),
    started with SIGINT ignored, as a non-interactive shell starts a background command."""
    return subprocess.Popen(
        ["make", "-s", "-o", f"{VENV}/.ftlab-installed", f"VENV={VENV}", f"PREFECT_PORT={port}",
         f"PREFECT_API_URL=http://127.0.0.1:{port}/api", target],
        cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))


def interrupt(proc: subprocess.Popen, log: Path) -> int:
    """One SIGINT to the process group; its exit status (a bounded wait: without a working handler it
    never exits on its own)."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        return proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"one SIGINT did not stop it:\n{log.read_text()[-3000:]}") from None


def test_make_server_and_worker_start_quietly_and_stop_on_one_sigint(tmp_path):
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_SERVER_ANALYTICS_ENABLED", "PREFECT_API_URL")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    server_log, worker_log = tmp_path / "server.log", tmp_path / "worker.log"
    server = make("server", port, env, server_log)
    worker = None
    try:
        wait_healthy(api)
        done = subprocess.run([sys.executable, "-m", "prefect", "work-pool", "create", "ftlab", "--type", "process"],
                              env={**env, "PREFECT_API_URL": api}, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        worker = make("worker", port, env, worker_log)
        deadline = time.monotonic() + 300
        while "started!" not in worker_log.read_text():
            assert worker.poll() is None and time.monotonic() < deadline, worker_log.read_text()
            time.sleep(0.2)
        assert interrupt(worker, worker_log) == 0
        worker = None
        assert "stopped!" in worker_log.read_text() and "SIGKILL" not in worker_log.read_text(), worker_log.read_text()
        assert interrupt(server, server_log) == 0
    finally:
        for proc in (worker, server):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    for log in (server_log, worker_log):
        text = log.read_text()
        assert "database is locked" not in text and "Traceback" not in text, text[-3000:]
