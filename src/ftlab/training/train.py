"""Fine-tune one method on the configured task and write its self-contained run directory.

A run directory holds: ``model/`` (safetensors: the whole model, or only adapter + head for
peft methods), ``metrics.json`` (test quality and cost), ``history.json`` (train/validation loss
and the task's metrics at every evaluation), ``predictions.parquet`` (test set) and
``train_predictions.parquet`` (the train subset scored at each evaluation, for drift and
overfitting checks), ``config.yaml`` (the resolved config), ``labels.json``, ``tokenizer/``,
``tensorboard/`` and ``dvclive/`` logs. It appears whole or not at all.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from ftlab.core.config import Cell
from ftlab.core.io import atomic_dir
from ftlab.core.record import RACE_KEYS, RunRecord
from ftlab.data.prepare import DataError, load_prepared
from ftlab.learning.config import Config
from ftlab.learning.methods import get_method
from ftlab.learning.modeling import count_parameters, load_tokenizer, save_weights
from ftlab.training.cost import PeakMemory, dir_bytes
from ftlab.training.identity import cell_identity, cell_key, with_race
from ftlab.training.parallel import (
    is_main_process,
    processes_on_this_node,
    threads_per_process,
    world_size,
)
from ftlab.training.scoring import scored
from ftlab.training.stopping import StopAt, budget_steps, checkpoint_step, nothing_left, replay
from ftlab.training.trainer import BestState, bucket, build_trainer, static_graphs, use_compile
from ftlab.training.writing import evaluate, history, write_run

log = logging.getLogger(__name__)


def _last_checkpoint(root: Path | None) -> str | None:
    """The newest complete checkpoint under ``root`` (BestState's file is written last)."""
    if root is None or not root.is_dir():
        return None
    done = [p for p in root.glob("checkpoint-*") if (p / "best_state.json").is_file()]
    return str(max(done, key=lambda p: int(p.name.split("-")[1]))) if done else None


def best_metric(cfg: Config) -> Any:
    """The validation metric that early stopping and the best weights follow: train.metric_for_best or
    the task's selection metric (its primary one unless the task says otherwise), with its direction."""
    task = cfg.task_type()
    return task.metric(cfg.train.metric_for_best) if cfg.train.metric_for_best else task.selection_metric


def checkpoint_dir(cfg: Config, cell: Cell, identity: dict) -> Path | None:
    """Where an unfinished run of this cell keeps its checkpoints (None: no checkpoints), keyed by the
    cell's identity: a killed run resumes after an edit that does not change its result, never on
    other data, params or code."""
    if cfg.train.checkpoint_dir is None:
        return None
    return cfg.train.checkpoint_dir / f"{cell.method}-{cell.name}-{cell_key(identity)}"


def subsample(train: pd.DataFrame, size: int | Literal["all"], seed: int) -> pd.DataFrame:
    """The first ``size`` rows of a seeded shuffle of ``train``, in their original order.

    For one seed the subsets are nested (the 100 examples are among the 500), so a learning curve
    adds data instead of swapping it; across seeds they differ, so the spread includes which
    examples a small training set happened to get.
    """
    if size == "all":
        return train
    if size > len(train):
        raise DataError(f"train size {size} (train_sizes, or search.train_size for a search) is more than the "
                        f"{len(train)} rows of the train split; lower it or use 'all'")
    keep = np.sort(np.random.default_rng(seed).permutation(len(train))[:size])
    return train.iloc[keep].reset_index(drop=True)


@contextmanager
def _output_dir(out_dir: Path) -> Iterator[Path]:
    """Where this process writes: the run directory (atomically) on the main process; on the other
    ranks of a DDP run a private scratch directory, so they never touch the run or its temporaries."""
    if is_main_process():
        with atomic_dir(out_dir) as tmp:
            yield tmp
    else:
        with tempfile.TemporaryDirectory(prefix="ftlab-rank-") as scratch:
            yield Path(scratch)


def _fit(trainer: Any, method_name: str, cfg: Config, resume: str | None) -> float:
    """Train; the wall time in seconds. Out-of-memory becomes a MemoryError that says what to lower."""
    start = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=resume)
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as e:
        # on CPU torch reports a failed allocation as a plain RuntimeError from its allocator
        if not isinstance(e, (torch.OutOfMemoryError, MemoryError)) and "can't allocate memory" not in str(e):
            raise
        raise MemoryError(
            f"{method_name}: out of memory at batch size {cfg.train.batch_size}, max length "
            f"{cfg.model.max_length}; lower train.batch_size or model.max_length"
        ) from e
    return time.perf_counter() - start


def _cost(cfg: Config, trainer: Any, train_seconds: float, n_train: int, memory: PeakMemory) -> dict:
    """Measured cost, the only part that differs between two runs of the same config: wall time
    includes the periodic evaluations, samples/s excludes them."""
    state = trainer.state
    eval_seconds = sum(v for e in state.log_history for k, v in e.items() if k.startswith("eval_") and k.endswith("_runtime"))
    samples_seen = min(state.global_step * cfg.train.batch_size, round(n_train * state.epoch))
    return {
        "train_seconds": round(train_seconds, 3),
        "eval_seconds_in_training": round(eval_seconds, 3),
        "train_samples_per_second": round(samples_seen / max(train_seconds - eval_seconds, 1e-9), 3),
        "peak_memory_mb": round(memory.peak_mb, 1),
        "memory_kind": memory.kind,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
        "precision": "bf16" if trainer.args.bf16 else "fp32",
        "compile": trainer.args.torch_compile,
        "pad_to_multiple_of": bucket(cfg),
        "processes": world_size(),  # of a DDP run (torchrun); samples/s counts all of them
    }


def _record(cfg: Config, method_name: str, cell: Cell, trainer: Any, best: BestState, ds: dict, test: pd.DataFrame,
            labels: list[str], decision: dict, counts: tuple[int, int], cost: dict, model_dir: Path,
            race: dict | None = None, trained_from: int = 0) -> RunRecord:
    """metrics.json: the test metrics, what trained, the best step, the measured cost and, in a race,
    whether the cell survived it or was eliminated (at which rung) and the step this run started at."""
    task, state = cfg.task_type(), trainer.state
    trainable, total = counts
    return RunRecord.model_validate({
        "method": method_name,
        "task": task.name,
        "primary_metric": task.primary.name,
        **task.test_metrics(test, labels),
        "decision": decision,
        "trainable_params": trainable,
        "total_params": total,
        "trainable_percent": round(100 * trainable / total, 4),
        "best_step": best.best_step,
        "best_validation": {"metric": best_metric(cfg).name, "value": best.best_value},
        "steps": state.global_step,
        "epochs": round(state.epoch or 0.0, 4),
        "n_train": len(ds["train"]),
        "n_validation": len(ds["validation"]),
        "n_test": len(ds["test"]),
        "seed": cell.seed,
        "train_size": cell.train_size,
        "artifact_bytes": dir_bytes(model_dir),  # the weights a user deploys
        "cost": cost,
        **({"status": race["status"], "race": {**{k: race[k] for k in RACE_KEYS}, "trained_from": trained_from}}
           if race else {}),
    })


def _resume(cfg: Config, method_name: str, ckpt_root: Path | None) -> tuple[str | None, BestState]:
    """The checkpoint an unfinished run of this cell left (None: start afresh), and the early-stopping
    state to go on with."""
    resume = _last_checkpoint(ckpt_root)
    metric = best_metric(cfg)
    best = BestState(metric.name, metric.higher_is_better, cfg.train.early_stopping_patience)
    if resume:
        log.info("%s: resuming from %s", method_name, resume)
        best.load(resume)
    return resume, best


@dataclass
class Setup:
    """One cell ready to train: its model, data and where its checkpoints go."""

    cell: Cell
    method: Any
    model: nn.Module
    tokenizer: Any
    splits: dict[str, pd.DataFrame]
    labels: list[str]
    ds: dict
    train_eval_rows: np.ndarray
    groups: list[dict]
    counts: tuple[int, int]
    identity: dict
    ckpt_root: Path | None

    @property
    def train_eval(self) -> Any:
        return self.ds["train"].select(self.train_eval_rows)


def setup(cfg: Config, method_name: str, data_dir: Path | None, seed: int | None,
          train_size: int | Literal["all"]) -> Setup:
    """The cell's seeded model, tokenised splits, parameter groups and identity (see :func:`train`)."""
    from transformers import set_seed

    method, task = get_method(method_name), cfg.task_type()
    params = cfg.params_for(method_name)
    cell = Cell(method_name, cfg.seeds[0] if seed is None else seed, train_size)
    torch.set_num_threads(cfg.train.threads or threads_per_process(processes_on_this_node()))
    splits, labels = load_prepared(cfg, data_dir)
    splits["train"] = subsample(splits["train"], cell.train_size, cell.seed)
    set_seed(cell.seed)
    model = method.prepare(task.build_model(cfg.model, labels, splits["train"]), params, task.peft_task_type)
    tokenizer = load_tokenizer(cfg.model)
    ds = {name: task.tokenize(df, tokenizer, cfg.model.max_length, labels) for name, df in splits.items()}
    train_eval_rows = np.random.default_rng(cell.seed).permutation(len(ds["train"]))[:cfg.train.train_eval_samples]
    trainable, total = count_parameters(model)
    log.info("%s: training %s of %s parameters (%.3f%%)", method_name, f"{trainable:,}", f"{total:,}", 100 * trainable / total)
    groups = method.param_groups(model, params, cfg.train.weight_decay)
    if use_compile(cfg.train.compile):
        static_graphs(cfg, bucket(cfg) or 1)
    identity = cell_identity(cfg, cell, data_dir)
    return Setup(cell, method, model, tokenizer, splits, labels, ds, train_eval_rows, groups, (trainable, total),
                 identity, checkpoint_dir(cfg, cell, identity))


def fit_until(cfg: Config, s: Setup, trainer: Any, resume: str | None, stop: StopAt) -> float:
    """Train to ``stop.step`` (None: the budget) from ``resume``; the seconds trained. A checkpoint
    with nothing left to train (the race stopped this cell there) is replayed, not trained on."""
    patience = cfg.train.early_stopping_patience
    if resume and nothing_left(resume, stop.step, budget_steps(trainer), patience):
        log.info("%s %s: nothing left to train after %s", s.cell.method, s.cell.name, resume)
        return replay(trainer, resume)
    return _fit(trainer, s.cell.method, cfg, resume)


def train(cfg: Config, method_name: str, out_dir: Path, data_dir: Path | None = None,
          seed: int | None = None, train_size: int | Literal["all"] = "all", callbacks: Sequence[Any] = (),
          race: dict | None = None) -> dict:
    """Fine-tune ``method_name`` on the prepared data and write the run directory ``out_dir``.

    ``seed`` (default: the first of ``cfg.seeds``) seeds the model's new weights, dropout, batch
    order and the training subset; ``train_size`` trains on that many training examples.
    ``callbacks``: more TrainerCallbacks (a search trial's pruning: ``ftlab.training.pruning``).
    ``race``: the race's record of this cell (``ftlab.race``): an eliminated cell trains no further
    than its stop step (from the race's checkpoint: no step is trained twice), a survivor goes on to
    its budget; the seconds the race spent on it count in its cost, and its record says which it was.

    Under ``torchrun``/``accelerate launch`` every process calls this; they train one model together
    and the main process (rank 0) alone evaluates it and writes the run; the others return ``{}``.
    Returns the run's record (``ftlab.core.record.RunRecord``) as written to ``metrics.json``.
    """
    s = setup(cfg, method_name, data_dir, seed, train_size)
    task = cfg.task_type()
    resume, best = _resume(cfg, method_name, s.ckpt_root)
    stop = StopAt(race["stop_step"] if race and race["status"] == "eliminated" else None)
    with _output_dir(Path(out_dir)) as tmp:
        work = s.ckpt_root or tmp / "trainer"
        trainer = build_trainer(cfg, method_name, s.model, s.tokenizer, s.ds, s.train_eval, s.labels, work, s.cell.seed,
                                s.ckpt_root is not None, best, s.groups, [*callbacks, stop], resume is not None)
        with PeakMemory() as memory:
            train_seconds = fit_until(cfg, s, trainer, resume, stop) + (race["train_seconds"] if race else 0.0)
        trainer.accelerator.wait_for_everyone()  # every rank's checkpoint files are written before rank 0 goes on
        if not is_main_process():
            return {}
        for logs in ("tensorboard", "dvclive"):
            (work / logs).mkdir(parents=True, exist_ok=True)
            shutil.move(work / logs, tmp / logs)
        model, ds, labels = s.model, s.ds, s.labels
        decision, test, latency = evaluate(task, model, trainer, ds, s.splits, labels, cfg.train.eval_batch_size)
        train_rows = s.splits["train"].iloc[s.train_eval_rows]
        train_predictions = scored(task, model, trainer, train_rows, s.train_eval, labels, decision, cfg.train.eval_batch_size)
        save_weights(model, tmp / "model", s.method.saves_adapter)
        s.tokenizer.save_pretrained(str(tmp / "tokenizer"))
        cost = {**_cost(cfg, trainer, train_seconds, len(ds["train"]), memory),
                "eval_latency_ms_per_sample": round(1000 * latency, 4)}
        record = _record(cfg, method_name, s.cell, trainer, best, ds, test, labels, decision, s.counts, cost,
                         tmp / "model", race, checkpoint_step(resume) if resume else 0)
        write_run(tmp, record, test, train_predictions, history(trainer.state.log_history, task), labels, s.groups,
                   cfg.for_cell(s.cell), with_race(s.identity, race))
        shutil.rmtree(work, ignore_errors=True)  # a finished run needs no checkpoints
    log.info("%s: %s %.4f in %.1fs -> %s", method_name, task.primary.label, record.primary, train_seconds, out_dir)
    return record.model_dump(mode="json")
