"""A search trial inside the Trainer: its validation score goes to Optuna at every evaluation, and a
trial the pruner drops stops there instead of training to its end.

The score reported is the best validation value so far, not the latest: a trial's result is its
best evaluation (BestState restores those weights), so a rung compares trials on what each would
keep if it stopped there. Step 0 (the pretrained model, before any update) is not reported: it
says nothing about the settings being tried.
"""

from __future__ import annotations

import math
import time
from typing import Any

import optuna
from transformers import TrainerCallback


class ReportToTrial(TrainerCallback):
    """Reports to ``trial`` at each validation evaluation and raises ``optuna.TrialPruned`` when the
    pruner drops it; the trial keeps its last step and its training seconds as user attributes."""

    def __init__(self, trial: optuna.Trial, metric: str, higher_is_better: bool):
        self.trial = trial
        self.key = f"eval_validation_{metric}"
        self.better = max if higher_is_better else min
        self.best: float | None = None
        self.start = time.perf_counter()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.start = time.perf_counter()

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict | None = None, **kwargs: Any) -> None:
        value = (metrics or {}).get(self.key)
        if value is None or state.global_step == 0 or math.isnan(value):
            return  # the train-subset evaluation, the pretrained model, or a diverged one (FiniteLoss stops it)
        self.best = value if self.best is None else self.better(self.best, value)
        self.trial.report(self.best, state.global_step)
        if self.trial.should_prune():
            self.trial.set_user_attr("steps", state.global_step)
            self.trial.set_user_attr("train_seconds", round(time.perf_counter() - self.start, 3))
            raise optuna.TrialPruned(f"validation {self.best:.4f} at step {state.global_step}")
