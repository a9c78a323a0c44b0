"""Fine-tune one method on the configured task and write its self-contained run directory.

A run directory holds: ``model/`` (safetensors: the whole model, or only adapter + head for
peft methods), ``metrics.json`` (test quality and cost), ``history.json`` (train/validation loss
and the task's metrics at every evaluation), ``predictions.parquet`` (test set) and
``train_predictions.parquet`` (the train subset scored at each evaluation, for drift and
overfitting checks), ``config.yaml`` (the resolved config), ``labels.json``, ``tokenizer/``,
``tensorboard/`` and ``dvclive/`` logs. It appears whole or not at all.
"""

from __future__ import annotations

import hashlib
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pandas as pd
import torch
from torch import nn

from ftlab.config import Cell, Config, dump_config
from ftlab.data import DataError, load_prepared
from ftlab.io import atomic_dir, write_json, write_text
from ftlab.methods import get_method
from ftlab.metrics import PeakMemory, dir_bytes
from ftlab.modeling import count_parameters, load_tokenizer, save_weights
from ftlab.parallel import (
    is_main_process,
    processes_on_this_node,
    threads_per_process,
    world_size,
)
from ftlab.tasks import Task
from ftlab.trainer import BestState, FiniteLoss, FtlabTrainer, NoFinalCheckpoint, dvclive_callback

log = logging.getLogger(__name__)
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def use_bf16(precision: str) -> bool:
    """Whether train.precision means bf16 autocast on this machine (see TrainConfig.precision)."""
    if precision != "auto":
        return precision == "bf16"
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    return any(getattr(cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


@torch.inference_mode()
def predict(model: nn.Module, dataset: Any, collator: Any, batch_size: int, bf16: bool = False) -> list[np.ndarray]:
    """The model's output for every row of ``dataset``, in its order (batched by length), in the
    precision the model was trained and evaluated in: one logit vector per row for sequence
    tasks, one per token (padding removed) for token tasks."""
    model.eval()
    device = next(model.parameters()).device
    lengths = [len(ids) for ids in dataset["input_ids"]]
    order = np.argsort(lengths, kind="stable")
    features = [{k: v for k, v in dataset[int(i)].items() if k in MODEL_INPUTS} for i in order]
    out: list[np.ndarray] = [np.empty(0)] * len(order)
    for start in range(0, len(features), batch_size):
        batch = {k: v.to(device) for k, v in collator(features[start : start + batch_size]).items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(**batch).logits.float().cpu().numpy()
        width = batch["input_ids"].shape[1]
        for row, i in zip(logits, order[start : start + batch_size], strict=True):
            # per-token outputs: peft's prompt methods prepend virtual tokens, so the batch's own
            # (right-padded) positions are the last `width`, and this row's are the first of those
            out[i] = row if row.ndim == 1 else row[-width:][: lengths[i]]
    return out


def _last_checkpoint(root: Path | None) -> str | None:
    """The newest complete checkpoint under ``root`` (BestState's file is written last)."""
    if root is None or not root.is_dir():
        return None
    done = [p for p in root.glob("checkpoint-*") if (p / "best_state.json").is_file()]
    return str(max(done, key=lambda p: int(p.name.split("-")[1]))) if done else None


def _history(log_history: list[dict], task: Task) -> list[dict]:
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


def best_metric(cfg: Config) -> Any:
    """The validation metric that early stopping and the best weights follow: train.metric_for_best or
    the task's selection metric (its primary one unless the task says otherwise), with its direction."""
    task = cfg.task_type()
    return task.metric(cfg.train.metric_for_best) if cfg.train.metric_for_best else task.selection_metric


def outputs(task: Task, model: nn.Module, dataset: Any, collator: Any, batch_size: int, bf16: bool) -> list[np.ndarray]:
    """The model's outputs on ``dataset`` as the task's predictions read them."""
    return task.align(dataset, predict(model, dataset, collator, batch_size, bf16))


def scored(task: Task, model: nn.Module, trainer: Any, df: pd.DataFrame, dataset: Any, labels: list[str],
           decision: dict, batch_size: int) -> pd.DataFrame:
    """The predictions frame of ``df``: from the task's own outputs (e.g. generation) if it has them,
    else from one forward pass."""
    bf16 = trainer.args.bf16
    own = task.test_outputs(model, trainer.processing_class, dataset, batch_size, bf16)
    rows = own if own is not None else outputs(task, model, dataset, trainer.data_collator, batch_size, bf16)
    return task.predictions(df, rows, labels, decision)


def checkpoint_dir(cfg: Config, cell: Cell) -> Path | None:
    """Where an unfinished run of exactly this cell and config keeps its checkpoints (None: no checkpoints)."""
    if cfg.train.checkpoint_dir is None:
        return None
    digest = hashlib.sha256(dump_config(cfg.for_cell(cell)).encode()).hexdigest()[:12]
    return cfg.train.checkpoint_dir / f"{cell.method}-{cell.name}-{digest}"


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


def _max_steps(cfg: Config, params: Any, n_train: int) -> int:
    """train.max_steps, raised to train.min_steps when the epochs would give fewer steps."""
    if cfg.train.max_steps > 0 or cfg.train.min_steps == 0:
        return cfg.train.max_steps
    steps = math.ceil((params.epochs or cfg.train.epochs) * math.ceil(n_train / cfg.train.batch_size))
    return cfg.train.min_steps if steps < cfg.train.min_steps else -1


def _training_args(cfg: Config, params: Any, output_dir: Path, checkpoints: bool, seed: int, max_steps: int):
    from transformers import TrainingArguments

    cuda = torch.cuda.is_available()
    # train.batch_size is the global batch: under torchrun each of the N processes takes 1/N of it,
    # so a step learns the same whatever the number of processes
    processes = world_size()
    if cfg.train.batch_size % processes:
        raise ValueError(f"train.batch_size={cfg.train.batch_size} is the global batch: it must divide "
                         f"evenly between the {processes} training processes")
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=cfg.train.batch_size // processes,
        per_device_eval_batch_size=cfg.train.eval_batch_size,
        num_train_epochs=params.epochs or cfg.train.epochs,
        max_steps=max_steps,
        learning_rate=params.lr,  # the schedule's reference; each param group keeps its own lr
        lr_scheduler_type="linear",
        warmup_steps=cfg.train.warmup_ratio,  # a float below 1 is a ratio of the total steps
        eval_strategy="steps",
        eval_steps=cfg.train.eval_steps,
        eval_on_start=True,  # step 0: the curves start at the pretrained model, the baseline to beat
        # a log at every evaluation step, where checkpoints are saved: FiniteLoss then stops a NaN
        # loss before it can reach a checkpoint
        logging_steps=math.gcd(cfg.train.logging_steps, cfg.train.eval_steps),
        # checkpoints (model, optimizer, scheduler, RNG, BestState) for resuming an interrupted run;
        # the best weights themselves are kept in memory by BestState
        save_strategy="steps" if checkpoints else "no",
        save_steps=cfg.train.eval_steps,
        save_total_limit=1,
        report_to=[],  # TensorBoard is attached explicitly, with the run's own log dir
        seed=seed,
        data_seed=seed,
        train_sampling_strategy="group_by_length",
        use_cpu=not cuda,
        bf16=use_bf16(cfg.train.precision),
        # TF32 for the matmuls left in fp32 (outside autocast) on Ampere and newer; None: torch's default
        tf32=True if cuda and torch.cuda.get_device_capability()[0] >= 8 else None,
        label_names=["labels"],
        logging_nan_inf_filter=False,  # a NaN loss must reach FiniteLoss, not be averaged away
        # Our classification, regression and tagging models average the loss over their batch
        # themselves; with this on, the Trainer also multiplies it by the number of processes under
        # DDP, doubling loss and gradients on 2. A causal LM divides its summed token loss by the
        # Trainer's token count instead: off, each process divides by its own half batch's count and
        # DDP's mean of the two means weighs a token by how few its half had (off by 0.1% in the loss
        # of tests/test_ddp.py); on, both divide by the whole batch's count, times the processes.
        average_tokens_across_devices=cfg.task_type().loss_over_batch_tokens,
    )


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
        "processes": world_size(),  # of a DDP run (torchrun); samples/s counts all of them
    }


def _evaluate(task: Task, model: nn.Module, trainer: Any, ds: dict, splits: dict, labels: list[str],
              batch_size: int) -> tuple[dict, pd.DataFrame, float]:
    """Decision settings tuned on validation (if the task has any), test predictions and the test
    latency per example."""
    bf16, collate = trainer.args.bf16, trainer.data_collator
    decision = {}
    if task.calibrated:
        decision = task.calibrate(splits["validation"], outputs(task, model, ds["validation"], collate, batch_size, bf16), labels)
    start = time.perf_counter()
    test = scored(task, model, trainer, splits["test"], ds["test"], labels, decision, batch_size)
    return decision, test, (time.perf_counter() - start) / len(ds["test"])


def train(cfg: Config, method_name: str, out_dir: Path, data_dir: Path | None = None,
          seed: int | None = None, train_size: int | Literal["all"] = "all") -> dict:
    """Fine-tune ``method_name`` on the prepared data and write the run directory ``out_dir``.

    ``seed`` (default: the first of ``cfg.seeds``) seeds the model's new weights, dropout, batch
    order and the training subset; ``train_size`` trains on that many training examples.

    Under ``torchrun``/``accelerate launch`` every process calls this; they train one model together
    and the main process (rank 0) alone evaluates it and writes the run; the others return ``{}``.
    """
    from torch.utils.tensorboard import SummaryWriter
    from transformers import set_seed
    from transformers.integrations import TensorBoardCallback

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
    train_eval = ds["train"].select(train_eval_rows)
    trainable, total = count_parameters(model)
    log.info("%s: training %s of %s parameters (%.3f%%)", method_name, f"{trainable:,}", f"{total:,}", 100 * trainable / total)
    groups = method.param_groups(model, params, cfg.train.weight_decay)

    ckpt_root = checkpoint_dir(cfg, cell)
    resume = _last_checkpoint(ckpt_root)
    metric = best_metric(cfg)
    best = BestState(metric.name, metric.higher_is_better, cfg.train.early_stopping_patience)
    if resume:
        log.info("%s: resuming from %s", method_name, resume)
        best.load(resume)
    with _output_dir(Path(out_dir)) as tmp:
        work = ckpt_root or tmp / "trainer"
        callbacks = [best, FiniteLoss(method_name), NoFinalCheckpoint()]
        if is_main_process():
            callbacks.append(TensorBoardCallback(SummaryWriter(str(work / "tensorboard"))))
            callbacks.append(dvclive_callback(work / "dvclive"))
        trainer = FtlabTrainer(
            model=model,
            args=_training_args(cfg, params, work, ckpt_root is not None, cell.seed, _max_steps(cfg, params, len(ds["train"]))),
            train_dataset=ds["train"],
            eval_dataset={"train": train_eval, "validation": ds["validation"]},
            data_collator=task.collator(tokenizer),
            processing_class=tokenizer,
            # one array of outputs: the models here return no others (EvalPrediction allows a tuple)
            compute_metrics=lambda p: task.eval_metrics(cast(np.ndarray, p.predictions), cast(np.ndarray, p.label_ids), labels),
            preprocess_logits_for_metrics=task.reduce_logits,
            # fused: one kernel over all parameters; on CPU 2-5x faster per step than the default
            # per-tensor loop (benchmarks/results/adamw.json), and the optimizer was 17% of a step
            optimizers=(torch.optim.AdamW(groups, lr=params.lr, fused=True), None),
            callbacks=callbacks,
        )
        with PeakMemory() as memory:
            train_seconds = _fit(trainer, method_name, cfg, resume)
        trainer.accelerator.wait_for_everyone()  # every rank's checkpoint files are written before rank 0 goes on
        if not is_main_process():
            return {}
        shutil.move(work / "tensorboard", tmp / "tensorboard")
        shutil.move(work / "dvclive", tmp / "dvclive")
        decision, test, latency = _evaluate(task, model, trainer, ds, splits, labels, cfg.train.eval_batch_size)
        train_rows = splits["train"].iloc[train_eval_rows]
        train_predictions = scored(task, model, trainer, train_rows, train_eval, labels, decision, cfg.train.eval_batch_size)
        save_weights(model, tmp / "model", method.saves_adapter)
        tokenizer.save_pretrained(str(tmp / "tokenizer"))
        state = trainer.state
        metrics = {
            "method": method_name,
            "task": task.name,
            "primary_metric": task.primary.name,
            **task.test_metrics(test, labels),
            "decision": decision,
            "trainable_params": trainable,
            "total_params": total,
            "trainable_percent": round(100 * trainable / total, 4),
            "best_step": best.best_step,
            "best_validation": {"metric": metric.name, "value": best.best_value},
            "steps": state.global_step,
            "epochs": round(state.epoch or 0.0, 4),
            "n_train": len(ds["train"]),
            "n_validation": len(ds["validation"]),
            "n_test": len(ds["test"]),
            "seed": cell.seed,
            "train_size": cell.train_size,
            "artifact_bytes": dir_bytes(tmp / "model"),  # the weights a user deploys
            "cost": {**_cost(cfg, trainer, train_seconds, len(ds["train"]), memory),
                     "eval_latency_ms_per_sample": round(1000 * latency, 4)},
        }
        test.to_parquet(tmp / "predictions.parquet", index=False)
        train_predictions.to_parquet(tmp / "train_predictions.parquet", index=False)
        write_json(tmp / "metrics.json", metrics)
        write_json(tmp / "history.json", _history(state.log_history, task))
        write_json(tmp / "labels.json", labels)
        write_json(tmp / "param_groups.json", [
            {"name": g["name"], "lr": g["lr"], "params": sum(p.numel() for p in g["params"])} for g in groups
        ])
        write_text(tmp / "config.yaml", dump_config(cfg.for_cell(cell)))
        shutil.rmtree(work, ignore_errors=True)  # a finished run needs no checkpoints
    log.info("%s: %s %.4f in %.1fs -> %s", method_name, task.primary.label, metrics[task.primary.name], train_seconds, out_dir)
    return metrics
