"""Prefect driver: the same stage functions as dvc.yaml, as tasks with retries and artifacts.

    python flows/finetune.py --params params.yaml       (or: ftlab pipeline)

Methods train concurrently up to ``pipeline.max_parallel``, each with cores / max_parallel torch
threads (more threads than cores made concurrent runs 5-15x slower on 2 cores). Methods whose
run directory is already complete for the same config are skipped, so a failed flow run can be
re-run and continues where it stopped. When the params file is the DVC project's params.yaml,
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
from ftlab.config import Config, dump_config, load_config

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


def _finished(cfg: Config, method: str) -> bool:
    """A complete run directory trained with exactly this config (written last, atomically)."""
    run = stages.run_dir(cfg, method)
    return (run / "metrics.json").is_file() and (run / "config.yaml").read_text() == dump_config(cfg)


@task(name="train")
def train(params: str, method: str, threads: int) -> dict:
    cfg = stages.with_threads(_config(params), threads)
    if _finished(cfg, method):
        get_run_logger().info("%s: finished run found in %s, skipping", method, stages.run_dir(cfg, method))
        return json.loads((stages.run_dir(cfg, method) / "metrics.json").read_text())
    return stages.train(cfg, method)


@task(name="check")
def check(params: str, method: str) -> dict:
    return stages.check(_config(params), method)


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
    """prepare → validate → train each method → check each method → compare."""
    cfg = _config(params)
    retry = {"retries": cfg.pipeline.retries, "retry_delay_seconds": cfg.pipeline.retry_delay_s}
    threads = cfg.train.threads or max(1, (os.cpu_count() or 1) // cfg.pipeline.max_parallel)
    prepare.with_options(**retry)(params)
    validate(params)
    waves = [cfg.methods[i : i + cfg.pipeline.max_parallel] for i in range(0, len(cfg.methods), cfg.pipeline.max_parallel)]
    for wave in waves:  # at most max_parallel trainings share the cores at any time
        train.with_options(**retry).map(unmapped(params), wave, unmapped(threads)).result()
    for method in cfg.methods:  # seconds each; Evidently and GX are not made for threads
        check(params, method)
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
