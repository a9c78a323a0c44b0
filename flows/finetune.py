"""Prefect driver: the same stage functions as dvc.yaml, as tasks with retries and artifacts.

    python flows/finetune.py --params params.yaml       (or: ftlab pipeline)

Cells (method × seed × train size) train concurrently up to ``pipeline.max_parallel``, each with
the cores of its machine / the runs sharing them as torch threads (more threads than cores made
concurrent runs 5-15x slower on 2 cores), from threads of this process or from the worker processes
of a Dask or Ray cluster (``pipeline.task_runner``); tasks pass file paths, never models. Each cell
trains in a process of its own, the same ``ftlab train`` command that ``dvc repro`` runs, so its
peak memory (and random state) is its own whichever driver ran it: in one long-lived process the
allocator keeps what earlier cells freed, and each later cell's peak included it. Cells whose
run directory records the cell's current identity (``ftlab.training.identity``: data, code, params) are skipped, so a failed flow run can be
re-run and continues where it stopped. When the params file is the DVC project's params.yaml,
the outputs are recorded in dvc.lock afterwards (``dvc commit``), so ``dvc status`` stays clean,
and only when every cell's run matches its current identity; not with ``overrides`` (``ftlab pipeline -S key=value``): those outputs were not built from
params.yaml, and recording them would make dvc.lock claim they were. In a DVC project the flow
holds the project from start to end (``ftlab.core.runlock``: DVC's write locks on every path it
writes): a `dvc repro` or a second flow started meanwhile refuses at once, naming the flow, and a
flow started during a repro refuses naming the repro, instead of training the same cells into the
same files.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
import yaml
from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.settings import PREFECT_API_URL
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from ftlab import stages
from ftlab.core import layout
from ftlab.core.config import Cell
from ftlab.core.escape import md_text
from ftlab.core.record import read_record
from ftlab.core.runlock import pipeline_paths, project_claim
from ftlab.learning.config import Config, load_config
from ftlab.progress import progress
from ftlab.training.identity import cell_identity, cell_key, recorded_key, with_race
from ftlab.training.parallel import dask_slots_on_this_host, threads_per_process

# Resolve transformers' lazy attributes here, in the main thread: first imports of them from
# concurrent task threads race ("cannot import name 'AutoTokenizer' from 'transformers'").
from transformers import (  # noqa: F401  isort: skip
    AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer, DataCollatorForTokenClassification,
    DataCollatorWithPadding, TrainingArguments,
)
import ftlab.training.train  # noqa: F401  isort: skip


Overrides = dict[str, Any] | None  # {dotted key: value}, applied over the params file (ftlab -S)


def _config(params: str, overrides: Overrides) -> Config:
    return load_config(Path(params), overrides)


def _threads(cfg: Config, width: int) -> int:
    """Torch threads of one run: train.threads, else the cores of the machine it runs on divided by
    the runs sharing them (all Dask workers' threads there, or the ``width`` runs of this flow)."""
    return cfg.train.threads or threads_per_process(dask_slots_on_this_host() or width)


@task(name="prepare")
def prepare(params: str, overrides: Overrides) -> str:
    return str(stages.prepare(_config(params, overrides)))


@task(name="validate")
def validate(params: str, overrides: Overrides) -> dict:
    result = stages.validate(_config(params, overrides))  # raises, naming each failure, when one fails
    create_markdown_artifact(f"**Data validation**: all {len(result['checks'])} expectations passed.",
                             key="data-validation")
    return result


@task(name="search")
def search(params: str, overrides: Overrides, method: str, width: int) -> dict:
    cfg = _config(params, overrides)
    return stages.search(stages.with_threads(cfg, _threads(cfg, width)), method)


def _finished(cfg: Config, cell: Cell) -> bool:
    """A complete run directory whose recorded identity is the cell's current one: the same data,
    code, result-changing settings and params (ftlab.training.identity); not threads, paths or report edits."""
    recorded = recorded_key(layout.run_dir(cfg, cell))
    current = with_race(cell_identity(stages.tuned(cfg, cell.method), cell), stages.race_record(cfg, cell))
    return recorded is not None and recorded == cell_key(current)


def _planned(cfg: Config, cell: Cell) -> bool:
    """The cell's identity file (the dep of its dvc.yaml train stage) holds its current identity."""
    path = layout.plan_file(cfg, cell)
    current = cell_identity(stages.tuned(cfg, cell.method), cell)
    return path.is_file() and cell_key(json.loads(path.read_text())) == cell_key(current)


@task(name="plan")
def plan(params: str, overrides: Overrides) -> None:
    stages.plan(_config(params, overrides))


@task(name="race")
def race(params: str, overrides: Overrides) -> dict:
    cfg = _config(params, overrides)
    return stages.race(stages.with_threads(cfg, _threads(cfg, 1)))  # one cell trains at a time here


@task(name="train", task_run_name="train {cell.method} {cell.name}")
def train(params: str, overrides: Overrides, cell: Cell, width: int) -> dict:
    cfg = _config(params, overrides)
    cfg = stages.with_threads(cfg, _threads(cfg, width))
    if _finished(cfg, cell):
        get_run_logger().info("%s %s: finished run found, skipping", cell.method, cell.name)
        return read_record(layout.run_dir(cfg, cell)).model_dump(mode="json")
    get_run_logger().info("%s %s: %d torch threads, process %d on %s", cell.method, cell.name,
                          cfg.train.threads, os.getpid(), socket.gethostname())
    return train_cell(params, overrides, cell, cfg.train.threads)


def set_options(overrides: Overrides) -> list[str]:
    """``overrides`` as ``ftlab`` options: ``--set key=value``, the value in YAML (read back equal)."""
    options = []
    for key, value in (overrides or {}).items():
        text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30).strip()
        options += ["--set", f"{key}={text.removesuffix('...').strip()}"]  # a scalar ends its document with ...
    return options


def train_cell(params: str, overrides: Overrides, cell: Cell, threads: int | None) -> dict:
    """Train one cell in a process of its own with ``ftlab train`` (what dvc.yaml runs); its metrics."""
    cmd = [sys.executable, "-m", "ftlab.cli", "train", "--params", params, "--method", cell.method,
           "--seed", str(cell.seed), "--train-size", str(cell.train_size), *set_options(overrides)]
    if threads:
        cmd += ["--set", f"train.threads={threads}"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()
        raise RuntimeError(f"train {cell.method} {cell.name} failed (exit {done.returncode}): {output[-4000:]}")
    get_run_logger().info("%s", done.stdout.strip())
    return read_record(layout.run_dir(_config(params, overrides), cell)).model_dump(mode="json")


@task(name="check", task_run_name="check {cell.method} {cell.name}")
def check(params: str, overrides: Overrides, cell: Cell) -> dict:
    return stages.check(_config(params, overrides), cell.method, cell.seed, cell.train_size)


@task(name="compare")
def compare(params: str, overrides: Overrides) -> dict:
    cfg = _config(params, overrides)
    result = stages.compare(cfg)
    create_table_artifact(result["methods"], key="method-comparison", description="ftlab method comparison")
    report = (cfg.report.dir / "comparison.md").read_text()
    create_markdown_artifact(report, key="comparison-report", description=result["recommendation"]["text"])
    return result


@task(name="promote")
def promote(params: str, overrides: Overrides) -> dict:
    from ftlab.serving.versions import card_note

    meta = stages.promote(_config(params, overrides))
    decision = meta["promotion"]
    pick = decision["challenger"]
    head = (f"**Promoted** {md_text(pick['method'])} (seed {pick['seed']}, train size {pick['train_size']}) as a "
            f"{meta['layout']} model, version {meta['version']}." if decision["promoted"] else
            f"**Refused** {md_text(pick['method'])} (seed {pick['seed']}, train size {pick['train_size']}): version "
            f"{meta.get('version')} keeps serving.")
    note = card_note({**decision, "version": decision.get("version", meta.get("version"))})
    create_markdown_artifact(head + "\n" + note, key="promoted-model")
    if not decision["promoted"]:
        get_run_logger().warning("promotion refused: %s", decision["reason"])
    return meta


@task(name="dvc-commit")
def dvc_commit(repo: Any, cfg: Config, cells: list[Cell]) -> None:
    """Record the outputs in dvc.lock so the next ``dvc repro`` has nothing to do; only when every
    cell's run is current by its identity (the data or code could have changed under the flow)."""
    stale = [f"{c.method} {c.name}" for c in cells if not (_finished(cfg, c) and _planned(cfg, c))]
    if stale:
        raise RuntimeError(f"not recording the outputs in dvc.lock: the run(s) {', '.join(stale)} do not match "
                           "their current identity (data, code or params changed during the flow); run it again")
    repo.commit(None, force=True)  # `dvc commit --force`, under the repository lock (Claim.recording)


def _width(cfg: Config) -> int:
    """Cells trained at once: pipeline.max_parallel, but on a GPU machine one run per GPU. A local
    Dask cluster gives each worker its own GPU; threads share one process, whose Trainer would spread
    every run over all GPUs, so they train one at a time. A remote cluster places runs itself."""
    gpus = torch.cuda.device_count()
    p = cfg.pipeline
    if not gpus or p.task_runner == "ray" or p.dask_address:
        return p.max_parallel
    return 1 if p.task_runner == "threads" else min(p.max_parallel, gpus)


def task_runner(cfg: Config, width: int) -> TaskRunner:
    """The runner named by pipeline.task_runner, refusing cluster workers without a shared server."""
    p = cfg.pipeline
    if p.task_runner == "threads":  # each cell trains in a process of its own (train_cell)
        return ThreadPoolTaskRunner(max_workers=8)
    if not PREFECT_API_URL.value():
        raise RuntimeError(
            f"pipeline.task_runner={p.task_runner} runs tasks in worker processes, which must all report to one "
            "Prefect server, but PREFECT_API_URL is not set: each worker would start a temporary server of its "
            "own and they collide on its SQLite database. Start one and point the flow at it: "
            "`prefect server start --host 127.0.0.1 &` then `export PREFECT_API_URL=http://127.0.0.1:4200/api`."
        )
    if p.task_runner == "ray":
        from prefect_ray import RayTaskRunner

        # Ray's workers do not inherit the flow's sys.path, and unpickle the tasks by importing this
        # module (`finetune`, from flows/): without it on their PYTHONPATH every task failed
        path = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH")]))
        init: dict[str, Any] = {"runtime_env": {"env_vars": {"PYTHONPATH": path}}}
        if p.ray_address is None:  # a local instance: no dashboard, which nobody opens and costs seconds to start
            init["include_dashboard"] = False
        return RayTaskRunner(address=p.ray_address, init_kwargs=init)
    from prefect_dask import DaskTaskRunner

    if p.dask_address:
        return DaskTaskRunner(address=p.dask_address)
    if not torch.cuda.device_count():
        return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                              cluster_kwargs={"n_workers": width, "threads_per_worker": 1, "processes": True})
    # one worker process per GPU, each seeing only its own (set before CUDA starts in the worker)
    workers = {i: {"cls": "distributed.Nanny", "options": {"nthreads": 1, "env": {"CUDA_VISIBLE_DEVICES": str(i)}}}
               for i in range(width)}
    return DaskTaskRunner(cluster_class="distributed.SpecCluster",
                          cluster_kwargs={"scheduler": {"cls": "distributed.Scheduler", "options": {}}, "workers": workers})


@flow(name="finetune_pipeline")
def finetune_pipeline(params: str = "params.yaml", reason: str | None = None, overrides: Overrides = None) -> dict:
    """The stages under the task runner of pipeline.task_runner: a flow's runner is fixed when it
    starts, so this flow picks it from the params and runs the stages as a subflow with it.
    ``reason``: why this run was started (the monitor deployment passes its drift verdict).
    ``overrides``: {dotted key: value} over the params file, as ``ftlab pipeline -S key=value``."""
    if reason:
        get_run_logger().info("retraining: %s", reason)
    cfg = _config(params, overrides)
    width = _width(cfg)
    with project_claim(pipeline_paths(cfg), f"Prefect flow finetune_pipeline (ftlab pipeline --params {params})") as claim:
        result = finetune_stages.with_options(task_runner=task_runner(cfg, width))(params, width, overrides)
        if claim is not None and Path(params).resolve() == Path("params.yaml").resolve():
            if overrides:
                get_run_logger().warning(
                    "not recording the outputs in dvc.lock (dvc commit): they were built with %s over params.yaml, "
                    "not from params.yaml alone; dvc.lock keeps its earlier record", " ".join(set_options(overrides)))
            else:
                with claim.recording() as repo:
                    dvc_commit(repo, cfg, cfg.cells())
    return result


@flow(name="finetune_stages")
def finetune_stages(params: str, width: int, overrides: Overrides = None) -> dict:
    """prepare → validate → search each method → plan → race → train each cell → check each cell → compare → promote."""
    cfg = _config(params, overrides)
    retry = {"retries": cfg.pipeline.retries, "retry_delay_seconds": cfg.pipeline.retry_delay_s}
    prepare.with_options(**retry)(params, overrides)
    validate(params, overrides)
    # at most `width` trainings share the machines at any time
    for i in range(0, len(cfg.methods), width):
        search.with_options(**retry).map(unmapped(params), unmapped(overrides), cfg.methods[i : i + width],
                                         unmapped(width)).result()
    plan(params, overrides)  # each cell's identity: what dvc.yaml's train stages depend on
    race.with_options(**retry)(params, overrides)  # where each cell's training ends (race.enabled)
    cells = cfg.cells()
    state = progress(cfg)
    artifact = create_progress_artifact(100 * state.fraction, key="training-progress", description=state.line())
    for i in range(0, len(cells), width):
        train.with_options(**retry).map(unmapped(params), unmapped(overrides), cells[i : i + width],
                                        unmapped(width)).result()
        state = progress(cfg)
        get_run_logger().info("%s", state.line())
        update_progress_artifact(artifact, 100 * state.fraction, description=state.line())
    for cell in cells:  # seconds each; Evidently and GX are not made for threads
        check(params, overrides, cell)
    result = compare(params, overrides)
    promote(params, overrides)
    return result


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Run the ftlab pipeline as a Prefect flow.")
    parser.add_argument("--params", default="params.yaml")
    logging.basicConfig(level=logging.INFO)
    finetune_pipeline(parser.parse_args().params)
