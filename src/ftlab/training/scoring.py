"""A trained model's outputs on a tokenised split, and the task's predictions frame from them.

Shared by training (test and train-subset predictions) and the promotion gate (a challenger scored
on the same rows as the champion).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ftlab.learning.tasks import Task

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


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
