"""What a finished run writes besides its weights: the test predictions (after the decision settings
tuned on validation), the per-evaluation history and the rest of the run directory (see
:mod:`ftlab.training.train`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from ftlab.core.io import write_json, write_text
from ftlab.core.record import RunRecord, write_record
from ftlab.learning.config import Config, dump_config
from ftlab.learning.tasks import Task
from ftlab.training.scoring import outputs, scored


def history(log_history: list[dict], task: Task) -> list[dict]:
    """One record per evaluation step: train-subset and validation loss and the task's metrics."""
    by_step: dict[int, dict] = {}
    for entry in log_history:
        step = entry["step"]  # Trainer.log stamps every entry with it
        for split in ("train", "validation"):
            if f"eval_{split}_loss" in entry:
                rec = by_step.setdefault(step, {"step": step, "epoch": round(entry["epoch"], 4)})
                for m in ("loss", *(m.name for m in task.metrics)):
                    rec[f"{split}_{m}"] = entry[f"eval_{split}_{m}"]
                rec[f"{split}_primary"] = rec[f"{split}_{task.primary.name}"]  # one key for DVC's plot of any task
    return [by_step[s] for s in sorted(by_step)]


def evaluate(task: Task, model: nn.Module, trainer: Any, ds: dict, splits: dict, labels: list[str],
              batch_size: int) -> tuple[dict, pd.DataFrame, float]:
    """Decision settings tuned on validation (if the task has any), test predictions and the test
    latency per example."""
    bf16, collate = trainer.args.bf16, trainer.data_collator
    decision = {}
    if task.calibrated:
        decision = task.calibrate(splits["validation"], outputs(task, model, ds["validation"], collate, batch_size, bf16), labels)
    start = time.perf_counter()
    test = scored(task, model, trainer, splits["test"], ds["test"], labels, decision, batch_size)
    if "slice" in splits["test"]:  # the source's rows or an ingested batch's: the report and the gate read it
        test["slice"] = splits["test"]["slice"].to_numpy()
    return decision, test, (time.perf_counter() - start) / len(ds["test"])


def write_run(tmp: Path, record: RunRecord, test: pd.DataFrame, train_predictions: pd.DataFrame, history: list[dict],
               labels: list[str], groups: list[dict], cfg: Config, identity: dict) -> None:
    """Everything of a run directory but the model and tokenizer (see the module docstring)."""
    test.to_parquet(tmp / "predictions.parquet", index=False)
    train_predictions.to_parquet(tmp / "train_predictions.parquet", index=False)
    write_record(tmp, record)
    write_json(tmp / "history.json", history)
    write_json(tmp / "labels.json", labels)
    write_json(tmp / "param_groups.json", [
        {"name": g["name"], "lr": g["lr"], "params": sum(p.numel() for p in g["params"])} for g in groups
    ])
    write_text(tmp / "config.yaml", dump_config(cfg))
    write_json(tmp / "identity.json", identity)  # what the flow compares to skip this cell
