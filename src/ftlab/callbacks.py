"""Trainer callbacks: early stopping that restores the best weights, and a divergence guard."""

from __future__ import annotations

import logging
import math

import torch
from transformers import TrainerCallback

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


class BestState(TrainerCallback):
    """Early stopping that keeps the best trainable weights in memory and restores them at the end.

    The Trainer's own ``load_best_model_at_end`` reloads checkpoints from disk and breaks for peft
    prompt methods (peft issue 2256); holding a copy of the trainable tensors works for every
    method and costs no checkpoint writes.
    """

    def __init__(self, metric: str, patience: int):
        self.key = f"eval_validation_{metric}"
        self.sign = -1.0 if metric == "loss" else 1.0
        self.patience = patience
        self.best: float | None = None
        self.best_step = 0
        self.bad_evals = 0
        self.state: dict[str, torch.Tensor] = {}

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        if not metrics or self.key not in metrics:
            return  # the train-subset evaluation of the same step
        value = self.sign * metrics[self.key]
        if self.best is None or value > self.best:
            self.best, self.best_step, self.bad_evals = value, state.global_step, 0
            self.state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
            return
        self.bad_evals += 1
        if self.patience and self.bad_evals >= self.patience:
            log.info("early stopping at step %d (best step %d)", state.global_step, self.best_step)
            control.should_training_stop = True

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.state:
            params = dict(model.named_parameters())
            with torch.no_grad():
                for name, tensor in self.state.items():
                    params[name].copy_(tensor)


class FiniteLoss(TrainerCallback):
    """Stop with the step and the method as soon as the logged training loss is NaN or infinite."""

    def __init__(self, method: str):
        self.method = method

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise TrainingDiverged(
                f"{self.method}: training loss became {loss} by step {state.global_step}; "
                f"lower method_params.{self.method}.lr or check the data"
            )
