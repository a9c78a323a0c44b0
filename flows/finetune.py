"""Prefect driver: the same stage functions as dvc.yaml, as tasks with retries and artifacts.

    python flows/finetune.py --params params.yaml       (or: ftlab pipeline)

Cells (method × seed × train size) train concurrently up to ``pipeline.max_parallel``, each with
cores / max_parallel torch threads (more threads than cores made concurrent runs 5-15x slower on 2
cores). Cells whose run directory is already complete for the same config are skipped, so a
failed flow run can be re-run and continues where it stopped. When the params file is the DVC project's params.yaml,
the outputs are recorded in dvc.lock afterwards (``dvc commit``), so ``dvc status`` stays clean.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from ftlab import stages
from ftlab.config import Cell, Config, dump_config, load_config

# Resolve transformers' lazy attributes here, in the main thread: first imports of them from
# concurrent task threads race ("cannot import name 'AutoTokenizer' from 'transformers'").
from transformers import (  # noqa: E402,F401  isort: skip
    AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
    TrainingArguments,
)
import ftlab.train  # noqa: E402,F401  isort: skip


def _config(params: str) -> Config:
    return load_config(Path(params))


@task(name="prepare")
def prepare(params: str) -> str:
    return str(stages.prepare(_config(params)))


@task(name="validate")
def validate(params: str) -> dict:
    result = stages.validate(_config(params))
    failed = sum(not c["success"] for c in result["checks"])
    create_markdown_artifact(
        f"**Data validation**: {len(result['checks'])} expectations, {failed} failed.",
        key="data-validation",
    )
    return result


@task(name="search")
def search(params: str, method: str, threads: int) -> dict:
    return stages.search(stages.with_threads(_config(params), threads), method)


def _finished(cfg: Config, cell: Cell) -> bool:
    """A complete run directory trained with exactly this config (written last, atomically)."""
    run = stages.run_dir(cfg, cell)
    return (run / "metrics.json").is_file() and (run / "config.yaml").read_text() == dump_config(
        stages.tuned(cfg, cell.method).for_cell(cell))


@task(name="train", task_run_name="train {cell.method} {cell.name}")
def train(params: str, cell: Cell, threads: int) -> dict:
    cfg = stages.with_threads(_config(params), threads)
    if _finished(cfg, cell):
        get_run_logger().info("%s %s: finished run found, skipping", cell.method, cell.name)
        return json.loads((stages.run_dir(cfg, cell) / "metrics.json").read_text())
    return stages.train(cfg, cell.method, cell.seed, cell.train_size)


@task(name="check", task_run_name="check {cell.method} {cell.name}")
def check(params: str, cell: Cell) -> dict:
    return stages.check(_config(params), cell.method, cell.seed, cell.train_size)


@task(name="compare")
def compare(params: str) -> dict:
    cfg = _config(params)
    result = stages.compare(cfg)
    create_table_artifact(result["methods"], key="method-comparison", description="ftlab method comparison")
    report = (cfg.report.dir / "comparison.md").read_text()
    create_markdown_artifact(report, key="comparison-report", description=result["recommendation"]["text"])
    return result


@task(name="dvc-commit")
def dvc_commit() -> None:
    """Record the outputs in dvc.lock so the next ``dvc repro`` has nothing to do."""
    subprocess.run(["dvc", "commit", "--force", "--quiet"], check=True)


@flow(name="finetune_pipeline", task_runner=ThreadPoolTaskRunner(max_workers=8))
def finetune_pipeline(params: str = "params.yaml") -> dict:
    """prepare → validate → search each method → train each cell → check each cell → compare."""
    cfg = _config(params)
    retry = {"retries": cfg.pipeline.retries, "retry_delay_seconds": cfg.pipeline.retry_delay_s}
    threads = cfg.train.threads or max(1, (os.cpu_count() or 1) // cfg.pipeline.max_parallel)
    prepare.with_options(**retry)(params)
    validate(params)
    width = cfg.pipeline.max_parallel  # at most this many trainings share the cores at any time
    for i in range(0, len(cfg.methods), width):
        search.with_options(**retry).map(unmapped(params), cfg.methods[i : i + width], unmapped(threads)).result()
    cells = cfg.cells()
    for i in range(0, len(cells), width):
        train.with_options(**retry).map(unmapped(params), cells[i : i + width], unmapped(threads)).result()
    for cell in cells:  # seconds each; Evidently and GX are not made for threads
        check(params, cell)
    result = compare(params)
    if Path(params).resolve() == Path("params.yaml").resolve() and Path("dvc.yaml").is_file():
        dvc_commit()
    return result


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Run the ftlab pipeline as a Prefect flow.")
    parser.add_argument("--params", default="params.yaml")
    logging.basicConfig(level=logging.INFO)
    finetune_pipeline(parser.parse_args().params)
