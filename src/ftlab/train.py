"""Fine-tune one method and write its self-contained run directory.

A run directory holds: ``model/`` (safetensors: the whole classifier, or only adapter + head for
peft methods), ``metrics.json`` (test quality and cost), ``history.json`` (train/validation loss
and accuracy at every evaluation), ``predictions.parquet`` (test set) and
``train_predictions.parquet`` (the train subset scored at each evaluation, for drift and
overfitting checks), ``config.yaml`` (the resolved config), ``labels.json``, ``tokenizer/`` and
``tensorboard/`` logs. It appears whole or not at all.
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
from ftlab.metrics import PeakMemory, classification_metrics, dir_bytes
from ftlab.modeling import build_model, count_parameters, load_tokenizer, save_weights
from ftlab.parallel import (
    is_main_process,
    processes_on_this_node,
    threads_per_process,
    world_size,
)
from ftlab.trainer import BestState, FiniteLoss, FtlabTrainer, NoFinalCheckpoint

log = logging.getLogger(__name__)


def tokenize(df: pd.DataFrame, tokenizer: Any, max_length: int):
    """A ``datasets.Dataset`` of unpadded token ids (padding happens per batch, in the collator)."""
    from datasets import Dataset

    enc = tokenizer(list(df["text"]), truncation=True, max_length=max_length)
    truncated = sum(len(ids) >= max_length for ids in enc["input_ids"])
    if truncated:
        log.warning("%d text(s) longer than model.max_length=%d were truncated", truncated, max_length)
    return Dataset.from_dict({**enc, "labels": df["label"].to_numpy()})


def use_bf16(precision: str) -> bool:
    """Whether train.precision means bf16 autocast on this machine (see TrainConfig.precision)."""
    if precision != "auto":
        return precision == "bf16"
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    return any(getattr(cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


@torch.inference_mode()
def predict(model: nn.Module, dataset: Any, collator: Any, batch_size: int, bf16: bool = False) -> np.ndarray:
    """Class probabilities for every row of ``dataset``, in its order (batched by length), in the
    precision the model was trained and evaluated in."""
    model.eval()
    device = next(model.parameters()).device
    order = np.argsort([len(ids) for ids in dataset["input_ids"]], kind="stable")
    features = [{k: v for k, v in dataset[int(i)].items() if k != "labels"} for i in order]
    probs = []
    for start in range(0, len(features), batch_size):
        batch = {k: v.to(device) for k, v in collator(features[start : start + batch_size]).items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(**batch).logits
        probs.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
    out = np.empty((len(order), probs[0].shape[1]), dtype=np.float32)
    out[order] = np.concatenate(probs)
    return out


def _last_checkpoint(root: Path | None) -> str | None:
    """The newest complete checkpoint under ``root`` (BestState's file is written last)."""
    if root is None or not root.is_dir():
        return None
    done = [p for p in root.glob("checkpoint-*") if (p / "best_state.json").is_file()]
    return str(max(done, key=lambda p: int(p.name.split("-")[1]))) if done else None


def _predictions(rows: pd.DataFrame, probs: np.ndarray, labels: list[str]) -> pd.DataFrame:
    out = pd.DataFrame({"text": rows["text"].to_numpy(), "label": rows["label"].to_numpy(), "prediction": probs.argmax(-1)})
    for i, name in enumerate(labels):
        out[f"prob_{name}"] = probs[:, i]
    return out


def _history(log_history: list[dict]) -> list[dict]:
    """One record per evaluation step: train-subset and validation loss/accuracy/F1."""
    by_step: dict[int, dict] = {}
    for entry in log_history:
        step = entry["step"]  # Trainer.log stamps every entry with it
        for split in ("train", "validation"):
            if f"eval_{split}_loss" in entry:
                rec = by_step.setdefault(step, {"step": step, "epoch": round(entry["epoch"], 4)})
                for m in ("loss", "accuracy", "macro_f1"):
                    rec[f"{split}_{m}"] = entry[f"eval_{split}_{m}"]
    return [by_step[s] for s in sorted(by_step)]


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
        # our models average the loss over their batch themselves; with this on, the Trainer also
        # multiplies it by the number of processes under DDP, doubling loss and gradients on 2
        average_tokens_across_devices=False,
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


def train(cfg: Config, method_name: str, out_dir: Path, data_dir: Path | None = None,
          seed: int | None = None, train_size: int | Literal["all"] = "all") -> dict:
    """Fine-tune ``method_name`` on the prepared data and write the run directory ``out_dir``.

    ``seed`` (default: the first of ``cfg.seeds``) seeds the model's new weights, dropout, batch
    order and the training subset; ``train_size`` trains on that many training examples.

    Under ``torchrun``/``accelerate launch`` every process calls this; they train one model together
    and the main process (rank 0) alone evaluates it and writes the run; the others return ``{}``.
    """
    from torch.utils.tensorboard import SummaryWriter
    from transformers import DataCollatorWithPadding, set_seed
    from transformers.integrations import TensorBoardCallback

    method = get_method(method_name)
    params = cfg.params_for(method_name)
    cell = Cell(method_name, cfg.seeds[0] if seed is None else seed, train_size)
    torch.set_num_threads(cfg.train.threads or threads_per_process(processes_on_this_node()))
    splits, labels = load_prepared(cfg, data_dir)
    splits["train"] = subsample(splits["train"], cell.train_size, cell.seed)
    set_seed(cell.seed)
    model = method.prepare(build_model(cfg.model, labels), params)
    tokenizer = load_tokenizer(cfg.model)
    ds = {name: tokenize(df, tokenizer, cfg.model.max_length) for name, df in splits.items()}
    n_train_eval = min(cfg.train.train_eval_samples, len(ds["train"]))
    train_eval_rows = np.random.default_rng(cell.seed).permutation(len(ds["train"]))[:n_train_eval]
    train_eval = ds["train"].select(train_eval_rows)
    trainable, total = count_parameters(model)
    log.info("%s: training %s of %s parameters (%.3f%%)", method_name, f"{trainable:,}", f"{total:,}", 100 * trainable / total)
    groups = method.param_groups(model, params, cfg.train.weight_decay)

    ckpt_root = checkpoint_dir(cfg, cell)
    resume = _last_checkpoint(ckpt_root)
    best = BestState(cfg.train.metric_for_best, cfg.train.early_stopping_patience)
    if resume:
        log.info("%s: resuming from %s", method_name, resume)
        best.load(resume)
    main = is_main_process()
    with _output_dir(Path(out_dir)) as tmp:
        work = ckpt_root or tmp / "trainer"
        callbacks = [best, FiniteLoss(method_name), NoFinalCheckpoint()]
        if main:
            callbacks.append(TensorBoardCallback(SummaryWriter(str(work / "tensorboard"))))
        trainer = FtlabTrainer(
            model=model,
            args=_training_args(cfg, params, work, ckpt_root is not None, cell.seed, _max_steps(cfg, params, len(ds["train"]))),
            train_dataset=ds["train"],
            eval_dataset={"train": train_eval, "validation": ds["validation"]},
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
            # one array of logits: the models here return no other outputs (EvalPrediction allows a tuple)
            compute_metrics=lambda p: classification_metrics(p.label_ids, cast(np.ndarray, p.predictions).argmax(-1)),
            # fused: one kernel over all parameters; on CPU 2-5x faster per step than the default
            # per-tensor loop (benchmarks/results/adamw.json), and the optimizer was 17% of a step
            optimizers=(torch.optim.AdamW(groups, lr=params.lr, fused=True), None),
            callbacks=callbacks,
        )
        with PeakMemory() as memory:
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
            train_seconds = time.perf_counter() - start
        trainer.accelerator.wait_for_everyone()  # every rank's checkpoint files are written before rank 0 goes on
        if not main:
            return {}
        shutil.move(work / "tensorboard", tmp / "tensorboard")
        state = trainer.state
        eval_seconds = sum(v for e in state.log_history for k, v in e.items() if k.startswith("eval_") and k.endswith("_runtime"))
        samples_seen = min(state.global_step * cfg.train.batch_size, round(len(ds["train"]) * state.epoch))

        start = time.perf_counter()
        bf16 = trainer.args.bf16
        probs = predict(model, ds["test"], trainer.data_collator, cfg.train.eval_batch_size, bf16)
        eval_latency = (time.perf_counter() - start) / len(ds["test"])
        train_probs = predict(model, train_eval, trainer.data_collator, cfg.train.eval_batch_size, bf16)
        y_true = splits["test"]["label"].to_numpy()

        save_weights(model, tmp / "model", method.saves_adapter)
        tokenizer.save_pretrained(str(tmp / "tokenizer"))
        metrics = {
            "method": method_name,
            **classification_metrics(y_true, probs.argmax(-1), labels=labels),
            "test_loss": float(-np.log(probs[np.arange(len(y_true)), y_true] + 1e-12).mean()),
            "trainable_params": trainable,
            "total_params": total,
            "trainable_percent": round(100 * trainable / total, 4),
            "best_step": best.best_step,
            "best_validation": {"metric": cfg.train.metric_for_best, "value": best.best_value},
            "steps": state.global_step,
            "epochs": round(state.epoch or 0.0, 4),
            "n_train": len(ds["train"]),
            "n_validation": len(ds["validation"]),
            "n_test": len(ds["test"]),
            "seed": cell.seed,
            "train_size": cell.train_size,
            "artifact_bytes": dir_bytes(tmp / "model"),  # the weights a user deploys
            # measured cost, the only part that differs between two runs of the same config:
            # wall time includes the periodic evaluations, samples/s excludes them
            "cost": {
                "train_seconds": round(train_seconds, 3),
                "eval_seconds_in_training": round(eval_seconds, 3),
                "train_samples_per_second": round(samples_seen / max(train_seconds - eval_seconds, 1e-9), 3),
                "eval_latency_ms_per_sample": round(1000 * eval_latency, 4),
                "peak_memory_mb": round(memory.peak_mb, 1),
                "memory_kind": memory.kind,
                "device": "cuda" if torch.cuda.is_available() else "cpu",
                "threads": torch.get_num_threads(),
                "precision": "bf16" if bf16 else "fp32",
                "processes": world_size(),  # of a DDP run (torchrun); samples/s counts all of them
            },
        }
        _predictions(splits["test"], probs, labels).to_parquet(tmp / "predictions.parquet", index=False)
        train_rows = splits["train"].iloc[train_eval_rows]
        _predictions(train_rows, train_probs, labels).to_parquet(tmp / "train_predictions.parquet", index=False)
        write_json(tmp / "metrics.json", metrics)
        write_json(tmp / "history.json", _history(state.log_history))
        write_json(tmp / "labels.json", labels)
        write_json(tmp / "param_groups.json", [
            {"name": g["name"], "lr": g["lr"], "params": sum(p.numel() for p in g["params"])} for g in groups
        ])
        write_text(tmp / "config.yaml", dump_config(cfg.for_cell(cell)))
        shutil.rmtree(work, ignore_errors=True)  # a finished run needs no checkpoints
    log.info("%s: accuracy %.4f, macro-F1 %.4f in %.1fs -> %s", method_name, metrics["accuracy"], metrics["macro_f1"], train_seconds, out_dir)
    return metrics
