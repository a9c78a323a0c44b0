"""The default pipeline on real DVC: a temporary git + DVC repo, the tiny model, real stages. The
helpers here build the projects of the other pipeline tests too: test_pipeline_{ner,causal_lm}.py
(the Prefect flow runs in both), test_monitor.py, test_dask.py and test_ray.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import toy_reviews

pytestmark = pytest.mark.pipeline

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["full", "lora"]
CELL = "s42-nall"  # the one cell per method of the smoke params: seed 42, all training examples


def project_env(cwd: Path, own_server: bool = False) -> dict[str, str]:
    """The environment of a command in ``cwd``; ``own_server``: without the tests' shared Prefect
    server, so a flow starts the temporary one a user's `ftlab pipeline` starts."""
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DVC_NO_ANALYTICS": "1"}
    if own_server:
        env.pop("PREFECT_API_URL", None)
    if (Path(cwd) / "src/ftlab").is_dir():  # a project runs its own copy of ftlab: the code its stages depend on
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(cwd) / "src"), env.get("PYTHONPATH")]))
    return env


def sh(*cmd: str, cwd: Path, check: bool = True, own_server: bool = False) -> subprocess.CompletedProcess:
    """``cmd`` in ``cwd`` (see project_env)."""
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=project_env(cwd, own_server))
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done


def smoke_params(tiny_model: str) -> dict:
    """params.smoke.yaml, pointed at the tiny model and trimmed to two methods to keep tests quick;
    without the drift report (checks.drift), which costs each check stage seconds of importing
    Evidently: the tests that reproduce the default project and each task's pipeline turn it on."""
    params = yaml.safe_load((ROOT / "params.smoke.yaml").read_text())
    params["model"]["name"] = tiny_model
    params["methods"] = METHODS
    params["method_params"] = {m: params["method_params"][m] for m in METHODS}
    params["train"]["threads"] = 1
    params["checks"]["drift"] = False
    return params


def make_repo(path: Path, params: dict) -> Path:
    """A fresh git + DVC project holding ftlab's dvc.yaml, flows and sources (the stage deps)."""
    path.mkdir(parents=True)
    for item in ("dvc.yaml", "flows", "src", "prefect.yaml", "data/raw", "data/batches"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, path / item)
    for cache in path.rglob("__pycache__"):
        shutil.rmtree(cache)
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git", "init", "-q", cwd=path)
    sh("git", "config", "user.email", "t@example.com", cwd=path)
    sh("git", "config", "user.name", "t", cwd=path)
    sh("dvc", "init", "-q", cwd=path)
    shutil.copy(ROOT / ".dvc/config", path / ".dvc/config")  # autostage, offline plots template, remote
    shutil.copy(ROOT / ".dvcignore", path / ".dvcignore")
    shutil.copytree(ROOT / ".dvc/plots", path / ".dvc/plots")
    sh("git", "add", "-A", cwd=path)
    sh("git", "commit", "-qm", "init", cwd=path)
    return path


SHARED = ROOT.parent / "shared" / "data"


def task_project(tmp_path: Path, tiny_model: str, task: dict, source: dict, files: dict[str, str]) -> Path:
    """A project on a slice of a real dataset: ``files`` maps a file name to the lines to copy."""
    params = smoke_params(tiny_model)
    params["methods"], params["method_params"] = ["full"], {"full": {"lr": 1e-3}}
    params["checks"]["drift"] = True  # the task's drift columns through Evidently
    params["task"] = task
    params["data"] = {"source": source, "validation_size": 0.2, "prepared_dir": "data/prepared"}
    params["train"].update(max_steps=4, eval_steps=2)
    repo = make_repo(tmp_path / "project", params)
    for name, text in files.items():
        (repo / name).write_text(text)
    return repo


def head_lines(path: Path, lines: int) -> str:
    with open(path, encoding="utf-8") as f:
        return "".join(next(f) for _ in range(lines))


def ran_stages(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


@pytest.fixture(scope="module")
def repo(tmp_path_factory, tiny_model) -> Path:
    """The DVC project after one full `dvc repro`."""
    params = smoke_params(tiny_model)
    params["data"]["source"] = "data/raw/data.csv"  # a file the tests edit in place
    params["checks"]["drift"] = True  # the default project's checks, drift report included
    path = make_repo(tmp_path_factory.mktemp("dvc") / "project", params)
    toy_reviews(240).to_csv(path / "data/raw/data.csv", index=False)
    out = sh("dvc", "repro", cwd=path)
    expected = {"prepare", "validate", "plan", "race", "check", "compare", "promote"} | {f"search@{m}" for m in METHODS} | {
        f"train@{m}-42-all" for m in METHODS}
    assert ran_stages(out.stdout) == expected, out.stdout
    return path


def test_repro_writes_the_report_with_every_method(repo):
    comparison = json.loads((repo / "reports/comparison.json").read_text())
    assert [m["method"] for m in comparison["methods"]] == METHODS
    assert {"accuracy", "macro_f1", "trainable_params", "train_seconds", "peak_memory_mb", "artifact_bytes",
            "overfitting"} <= set(comparison["methods"][0])
    assert comparison["recommendation"]["text"]
    for name in ("comparison.md", "comparison.html", "validation_curves.png", "quality_vs_trainable.png",
                 "quality_vs_time.png", "learning_curves.png", "validation/result.json"):
        assert (repo / "reports" / name).is_file(), name
    html = (repo / "reports/comparison.html").read_text()
    assert all(m in html for m in METHODS) and 'src="http' not in html and 'href="http' not in html
    for m in METHODS:
        checks = json.loads((repo / f"reports/checks/{m}/{CELL}/checks.json").read_text())
        assert checks["verdict"] in {"ok", "warn", "overfit"} and "oov_rate" in checks["drift"]
        assert (repo / f"reports/checks/{m}/{CELL}/drift.html").is_file()
        assert json.loads((repo / f"reports/search/{m}.json").read_text()) == {"method": m, "enabled": False, "chosen": {}}
    promoted = json.loads((repo / "models/ftlab-model/ftlab.json").read_text())  # `make run` ends promoted
    assert promoted["method"] == comparison["recommendation"]["cheapest_within_tolerance"]["method"]


def test_second_repro_does_nothing(repo):
    out = sh("dvc", "repro", cwd=repo)
    assert ran_stages(out.stdout) == set(), out.stdout
    assert "up to date" in sh("dvc", "status", cwd=repo).stdout


def test_metrics_and_plots_render(repo):
    metrics = sh("dvc", "metrics", "show", "--json", cwd=repo).stdout
    assert all(f"runs/{m}/{CELL}/metrics.json" in metrics for m in METHODS)
    out = sh("dvc", "plots", "show", "--json", cwd=repo).stdout
    assert all(f"runs/{m}/{CELL}/history.json" in out for m in METHODS)
    assert all(f"runs/{m}/{CELL}/dvclive/plots/metrics/loss.tsv" in out for m in METHODS)  # DVCLive's steps
    sh("dvc", "plots", "show", "-o", "plots_html", cwd=repo)
    page = (repo / "plots_html/index.html").read_text()
    assert "vegaEmbed(" in page and "validation_curves.png" in page
    assert "<script src=" not in page and 'href="http' not in page  # renders offline


def edit_params(repo: Path, **values) -> None:
    """Set params.yaml values: edit_params(repo, train__threads=2)."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for dotted, value in values.items():
        *parents, key = dotted.split("__")
        node = params
        for name in parents:
            node = node.setdefault(name, {})
        node[key] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def edit_file(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def trained(output: str) -> set[str]:
    return {s.removeprefix("train@") for s in ran_stages(output) if s.startswith("train@")}


def settled(repo: Path) -> None:
    """Both drivers agree that nothing is to be done: `dvc status` is clean, `dvc repro` runs no stage,
    and the flow's rule finds every cell current (its code hash ignores the comment and help text
    the tests edit in the project's copy of the code)."""
    assert "up to date" in sh("dvc", "status", cwd=repo).stdout
    assert ran_stages(sh("dvc", "repro", cwd=repo).stdout) == set()
    sys.path.insert(0, str(ROOT / "flows"))
    from finetune import _config, _finished, _planned

    cwd = Path.cwd()
    os.chdir(repo)  # the params' paths are relative to the project
    try:
        cfg = _config("params.yaml", None)
        assert [c for c in cfg.cells() if not (_finished(cfg, c) and _planned(cfg, c))] == []
    finally:
        os.chdir(cwd)


def test_edits_that_change_no_result_retrain_no_cell(repo):
    """train.threads, a report, a checks and a monitor setting, another command's help text and a
    comment in the training code: dvc repro re-renders the report and retrains nothing. (Without
    the drift report from here on, the later tests' check stages are seconds quicker.)"""
    edit_params(repo, train__threads=2, report__tolerance=0.05, checks__drift=False, monitor__numeric_threshold=0.3)
    edit_file(repo / "src/ftlab/cli/operations.py", '"""CI retraining: dvc pull', '"""Retrain in CI: dvc pull')
    edit_file(repo / "src/ftlab/training/trainer.py", "from __future__", "# a comment\nfrom __future__")
    out = sh("dvc", "repro", cwd=repo)
    assert trained(out.stdout) == set() and {"plan", "compare"} <= ran_stages(out.stdout), out.stdout
    assert not (repo / f"reports/checks/full/{CELL}/drift.html").exists()
    settled(repo)


def test_one_methods_lr_retrains_its_cells_only_under_the_flow(repo):
    """The flow skips the cell dvc repro trained (same identity) and retrains the edited method's;
    it records what it built in dvc.lock, and dvc repro agrees."""
    full, lora = (repo / f"runs/{m}/{CELL}/metrics.json" for m in ("full", "lora"))
    stamps = full.stat().st_mtime_ns, lora.stat().st_mtime_ns
    edit_params(repo, method_params__lora__lr=0.003)
    out = sh(sys.executable, "-m", "ftlab.cli", "pipeline", cwd=repo)
    logged = " ".join((out.stdout + out.stderr).split())
    assert "full s42-nall: finished run found, skipping" in logged and "cells 2/2 done" in logged
    assert full.stat().st_mtime_ns == stamps[0] and lora.stat().st_mtime_ns != stamps[1]
    assert yaml.safe_load((repo / f"runs/lora/{CELL}/config.yaml").read_text())["method_params"]["lora"]["lr"] == 0.003
    settled(repo)


def test_data_edited_in_place_retrains_every_cell_and_changes_the_report(repo):
    comparison = (repo / "reports/comparison.json").read_text()
    promoted = (repo / "models/ftlab-model/ftlab.json").read_text()
    toy_reviews(200, seed=1).to_csv(repo / "data/raw/data.csv", index=False)
    out = sh("dvc", "repro", cwd=repo)
    assert trained(out.stdout) == {f"{m}-42-all" for m in METHODS}, out.stdout
    assert "cells 1/2 done" in out.stdout and "cells 2/2 done" in out.stdout  # each train stage's progress line
    assert (repo / "reports/comparison.json").read_text() != comparison
    assert (repo / "models/ftlab-model/ftlab.json").read_text() != promoted
    settled(repo)


def test_a_statement_in_a_training_module_makes_every_cell_stale_under_both_drivers(repo):
    """An edit of the code training runs (a statement, not a comment) changes every cell's identity:
    after the plan stage, `dvc status` names every train stage, and the flow's rule (run on the
    project's code) finds no cell current. Undone, both agree again that nothing is to be done."""
    trainer = repo / "src/ftlab/training/trainer.py"
    original = trainer.read_text()
    trainer.write_text(original.replace("from __future__ import annotations", "from __future__ import annotations\nEDITED = 1", 1))
    try:
        sh("dvc", "repro", "plan", cwd=repo)
        status = sh("dvc", "status", cwd=repo).stdout
        assert all(f"train@{m}-42-all:" in status for m in METHODS), status
        rule = ("import sys; sys.path.insert(0, 'flows'); from finetune import _config, _finished; "
                "cfg = _config('params.yaml', None); print(sorted(c.method for c in cfg.cells() if not _finished(cfg, c)))")
        assert sh(sys.executable, "-c", rule, cwd=repo).stdout.strip() == str(sorted(METHODS))
    finally:
        trainer.write_text(original)
    sh("dvc", "repro", "plan", cwd=repo)
    settled(repo)


def test_an_unlabelled_batch_re_prepares_and_retrains_nothing(repo, tmp_path):
    """`ftlab ingest` of rows without labels: DVC versions the batch, and dvc repro prepares again (the
    batches directory is its dep) to the same bytes, so nothing downstream runs."""
    toy_reviews(40, seed=5)[["text"]].to_csv(tmp_path / "incoming.csv", index=False)
    out = sh(sys.executable, "-m", "ftlab.cli", "ingest", str(tmp_path / "incoming.csv"), cwd=repo)
    assert "has no labels" in out.stdout and len(list((repo / "data/batches").glob("*.dvc"))) == 1, out.stdout
    out = sh("dvc", "repro", cwd=repo)
    assert ran_stages(out.stdout) == {"prepare"}, out.stdout
    settled(repo)


def test_exp_run_trains_only_the_changed_method_and_the_new_cells(repo):
    """`dvc exp run -S` of one method's param and a new train size: that method's cell and the new
    cells train, the other method's finished cell is cached; the report then has every cell."""
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "after repro", cwd=repo)
    out = sh("dvc", "exp", "run", "-S", "method_params.lora.r=4", "-S", "train_sizes=[20,all]", cwd=repo)
    trained = {"train@lora-42-all", "train@full-42-20", "train@lora-42-20"}
    assert ran_stages(out.stdout) == {"search@lora", "plan", "race", "check", "compare", "promote"} | trained, out.stdout
    assert yaml.safe_load((repo / f"runs/lora/{CELL}/config.yaml").read_text())["method_params"]["lora"]["r"] == 4
    assert json.loads((repo / f"runs/lora/{CELL}/metrics.json").read_text())["trainable_params"] < 10_000
    assert json.loads((repo / "runs/lora/s42-n20/metrics.json").read_text())["n_train"] == 20
    comparison = json.loads((repo / "reports/comparison.json").read_text())
    assert len(comparison["cells"]) == 4 and comparison["by_size"][0]["n_train"] == 20
    assert ran_stages(sh("dvc", "repro", cwd=repo).stdout) == set()


def test_bad_data_stops_the_pipeline_before_training(tmp_path, tiny_model, toy_csv):

    leaky = pd.read_csv(toy_csv)
    leaky = pd.concat([leaky, leaky.head(30)])  # the same texts twice: duplicates and train/test leakage
    leaky.to_csv(tmp_path / "leaky.csv", index=False)
    params = smoke_params(tiny_model)
    params["data"] = {"source": str(tmp_path / "leaky.csv"), "prepared_dir": "data/prepared"}
    repo = make_repo(tmp_path / "project", params)
    out = sh("dvc", "repro", cwd=repo, check=False)
    assert out.returncode != 0
    assert "leak" in (out.stdout + out.stderr).lower()
    assert not (repo / "runs").exists()


def test_prefect_flow_applies_set_overrides_and_keeps_them_out_of_dvc_lock(tmp_path, tiny_model):
    """`ftlab pipeline -S ...`: the flow's tasks and the `ftlab train` processes of its cells read the
    overrides; outputs not built from params.yaml alone are not recorded in dvc.lock."""
    repo = make_repo(tmp_path / "project", smoke_params(tiny_model))  # params.yaml: full and lora, 2 steps
    out = sh(sys.executable, "-m", "ftlab.cli", "pipeline", "-S", "methods=[lora]", "-S", "method_params.lora.r=2",
             "-S", "train.max_steps=3", cwd=repo, own_server=True)
    comparison = json.loads((repo / "reports/comparison.json").read_text())
    assert [m["method"] for m in comparison["methods"]] == ["lora"]  # the flow's tasks
    assert not (repo / "runs/full").exists()
    run = repo / f"runs/lora/{CELL}"
    run_config = yaml.safe_load((run / "config.yaml").read_text())  # the training process
    assert run_config["method_params"]["lora"]["r"] == 2 and run_config["train"]["max_steps"] == 3
    assert json.loads((run / "history.json").read_text())[-1]["step"] == 3
    assert json.loads((repo / "models/ftlab-model/ftlab.json").read_text())["method"] == "lora"
    assert not (repo / "dvc.lock").exists()
    logged = " ".join((out.stdout + out.stderr).split())  # Prefect's console handler wraps its lines
    assert "not recording the outputs in dvc.lock (dvc commit): they were built with --set methods=[lora]" in logged, logged


def test_two_runs_at_once_refuse_naming_the_holder(repo, monkeypatch):
    """A run that holds the project makes the other driver refuse at once, naming it, and change
    nothing: `ftlab pipeline` while DVC's repository lock is held (a repro between stages), and
    `dvc repro` while a flow's write locks are held, even with nothing to do (DVC takes a stage's
    locks before it checks whether the stage changed). test_runlock.py starts both drivers for real."""
    from dvc.repo import Repo

    from ftlab.core.runlock import pipeline_paths, project_claim
    from ftlab.learning.config import load_config

    lock = repo / "dvc.lock"
    recorded = lock.read_text()
    with Repo(str(repo)).lock:  # what a running `dvc repro` holds between stages
        out = sh(sys.executable, "-m", "ftlab.cli", "pipeline", cwd=repo, check=False)
    assert out.returncode == 1
    assert f"another run holds this project: process {os.getpid()}" in " ".join((out.stdout + out.stderr).split())
    assert lock.read_text() == recorded
    monkeypatch.chdir(repo)
    with project_claim(pipeline_paths(load_config("params.yaml")), "a flow") as held:  # what a running flow holds
        assert held is not None
        out = sh("dvc", "repro", cwd=repo, check=False)
    assert out.returncode != 0 and f"(PID {os.getpid()}): a flow" in out.stdout + out.stderr, out.stdout + out.stderr
    assert lock.read_text() == recorded
