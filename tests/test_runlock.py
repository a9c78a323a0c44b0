"""Two drivers at once (issue 37): `dvc repro` and the Prefect flow refuse each other for the whole of
a run, naming the one that holds the project, and change nothing (ftlab.core.runlock)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import psutil
import pytest

from ftlab.core.runlock import ProjectBusy, project_claim
from tests.test_pipeline import make_repo, sh, smoke_params


@pytest.fixture
def dvc_project(tmp_path, monkeypatch) -> Path:
    """An empty DVC project (no git) as the working directory: all a claim needs."""
    sh("dvc", "init", "--no-scm", "-q", cwd=tmp_path)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_rwlock(project: Path, pid: int, cmd: str, path: str) -> None:
    """An entry of DVC's rwlock, as a repro inside a stage that writes ``path`` leaves it."""
    entry = {"write": {str(project / path): {"pid": pid, "cmd": cmd}}}
    (project / ".dvc/tmp").mkdir(exist_ok=True)
    (project / ".dvc/tmp/rwlock").write_text(json.dumps(entry))


def test_a_live_holder_is_named_and_a_dead_one_holds_nothing(dvc_project):
    """A live pid in DVC's rwlock holds the paths it writes; a killed run's entry (its pid gone)
    does not, and holding the project takes over its paths."""
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        write_rwlock(dvc_project, sleeper.pid, "dvc repro", "runs/full/s42-nall/model")
        with pytest.raises(ProjectBusy, match=rf"another run holds this project: process {sleeper.pid} \(dvc repro\); wait"):
            with project_claim([Path("runs")], "flow"):
                pass
    finally:
        sleeper.kill()
        sleeper.wait()
    write_rwlock(dvc_project, sleeper.pid, "dvc repro", "runs/full/s42-nall/model")  # now a dead pid
    with project_claim([Path("runs")], "flow") as claim:
        assert claim is not None
        held = json.loads((dvc_project / ".dvc/tmp/rwlock").read_text())
        assert held["write"] == {str(dvc_project / "runs"): {"pid": os.getpid(), "cmd": "flow"}}
    assert "write" not in json.loads((dvc_project / ".dvc/tmp/rwlock").read_text())  # let go at the end


def test_paths_no_stage_shares_do_not_conflict_and_recording_lets_the_claim_go(dvc_project):
    write_rwlock(dvc_project, os.getppid(), "dvc repro", "elsewhere/out")  # a live process, other paths
    with project_claim([Path("runs"), Path("reports")], "flow") as claim:
        assert claim is not None
        with claim.recording() as repo:  # the repository lock is held, the write locks gone
            assert repo.lock.is_locked
            assert list(json.loads((dvc_project / ".dvc/tmp/rwlock").read_text())["write"]) == [str(dvc_project / "elsewhere/out")]


def test_outside_a_dvc_project_there_is_nothing_to_hold(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with project_claim([Path("runs")], "flow") as claim:
        assert claim is None


def start(*cmd: str, cwd: Path, log: Path) -> subprocess.Popen:
    """A driver in a session of its own, its output in ``log`` (a pipe never drained could block it)."""
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DVC_NO_ANALYTICS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(cwd / "src"), os.environ.get("PYTHONPATH")]))}
    with open(log, "w") as out:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_until(driver: subprocess.Popen, log: Path, what: str, done, timeout: float = 180) -> None:
    """Until ``done()`` holds, while the driver runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert driver.poll() is None, f"{driver.args} ended ({driver.returncode}) before {what}: {log.read_text()[-3000:]}"
        try:
            if done():
                return
        except (psutil.Error, OSError, ValueError):
            pass  # a child that ended while being read; the rwlock file while DVC rewrites it
        time.sleep(0.1)  # a driver in its train stage trains on, CPU the suite lacks, until this notices
    raise AssertionError(f"{driver.args} did not reach {what} in {timeout} s")


def training(driver: subprocess.Popen) -> bool:
    """The driver runs a cell's training command (`ftlab train`, a process under it)."""
    return any("train" in p.cmdline() for p in psutil.Process(driver.pid).children(recursive=True))


def holding(driver: subprocess.Popen, project: Path) -> bool:
    """The driver's write locks are in DVC's rwlock: a flow holds the project and runs its stages."""
    held = json.loads((project / ".dvc/tmp/rwlock").read_text()).get("write", {})
    return any(info["pid"] == driver.pid for info in held.values())


def stop(driver: subprocess.Popen) -> None:
    """Kill the driver and every process under it (the training command, Prefect's server)."""
    if driver.poll() is not None:  # ended, or stopped already
        return
    top = psutil.Process(driver.pid)
    family = [top, *top.children(recursive=True)]
    for proc in family:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.Error:
            pass
    psutil.wait_procs(family, timeout=30)
    driver.wait()


def second(*cmd: str, cwd: Path, log: Path, timeout: float = 120) -> tuple[int, str]:
    """Run the second driver to its end; its exit status and output on one line (Rich and Prefect
    wrap theirs). One that does not refuse trains on and on: it is killed, and that fails the test."""
    driver = start(*cmd, cwd=cwd, log=log)
    try:
        driver.wait(timeout)
    except subprocess.TimeoutExpired:
        stop(driver)
        raise AssertionError(f"{' '.join(cmd)} did not refuse in {timeout} s: {log.read_text()[-3000:]}") from None
    return driver.returncode, " ".join(log.read_text().split())


@pytest.mark.pipeline
def test_repro_and_the_flow_refuse_each_other_while_a_stage_runs(tmp_path, tiny_model):
    """The issue's case: `dvc repro` inside a train stage, then `ftlab pipeline`, which used to re-prepare
    and retrain beside it (DVC lets its repository lock go while a command runs); and the reverse,
    whose refusal (DVC's "Unable to acquire lock") named no one. The second exits non-zero naming the
    first and leaves dvc.lock as it was. Training is endless (a million steps of the tiny model); the
    two orders run in two projects one after the other: a flow started beside `dvc repro` would train
    on for the half minute repro takes to reach its train stage, CPU time the suite lacks."""
    params = smoke_params(tiny_model)
    params["methods"], params["method_params"] = ["full"], {"full": {"lr": 1e-3}}
    params["train"].update(max_steps=1_000_000, eval_steps=100_000, logging_steps=100_000)
    repro_first, flow_first = (make_repo(tmp_path / name, params) for name in ("repro-first", "flow-first"))
    with ExitStack() as running:  # each driver is stopped at the end, whatever fails
        repro = start("dvc", "repro", cwd=repro_first, log=tmp_path / "repro.log")
        running.callback(stop, repro)
        wait_until(repro, tmp_path / "repro.log", "its train stage", lambda: training(repro))
        recorded = (repro_first / "dvc.lock").read_bytes()  # prepare, validate, search and plan
        code, out = second(sys.executable, "-m", "ftlab.cli", "pipeline", cwd=repro_first, log=tmp_path / "flow-second.log")
        assert code == 1 and repro.poll() is None
        assert f"another run holds this project: process {repro.pid} (" in out and "dvc repro" in out, out
        assert (repro_first / "dvc.lock").read_bytes() == recorded
        stop(repro)

        flow = start(sys.executable, "-m", "ftlab.cli", "pipeline", cwd=flow_first, log=tmp_path / "flow.log")
        running.callback(stop, flow)
        wait_until(flow, tmp_path / "flow.log", "holding the project", lambda: holding(flow, flow_first))
        code, out = second("dvc", "repro", cwd=flow_first, log=tmp_path / "repro-second.log")
        assert code != 0 and flow.poll() is None
        assert f"(PID {flow.pid}): Prefect flow finetune_pipeline (ftlab pipeline --params params.yaml)" in out, out
        assert "Running stage" not in out and not (flow_first / "dvc.lock").exists()  # no stage ran, none recorded
