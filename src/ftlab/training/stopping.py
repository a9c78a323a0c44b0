"""Stopping a cell part-way through its step budget, and going on later as if it never stopped.

The race (``ftlab.race``) trains every cell to a rung, a share of its budget, and the train stage
takes a survivor on from there. The learning-rate schedule stays the whole budget's (the Trainer's
``max_steps`` is not touched, training just stops), and the stop writes a checkpoint (weights,
optimizer, scheduler, RNG, BestState), so a stop and a resume train what the uninterrupted run trains.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerState


def budget_steps(trainer: Any) -> int:
    """The optimizer steps the Trainer will run in all (its ``max_steps``), known before it starts."""
    args = trainer.args
    if args.max_steps > 0:
        return int(args.max_steps)
    batches = math.ceil(len(trainer.train_dataset) / (args.train_batch_size * args.world_size))
    return math.ceil(args.num_train_epochs * max(batches // args.gradient_accumulation_steps, 1))


def rung_step(share: float, budget: int, eval_steps: int) -> int:
    """The evaluation step at or after ``share`` of ``budget`` (at most the budget): rungs are
    compared on evaluations the Trainer makes anyway, and checkpoints are written there."""
    return min(budget, math.ceil(share * budget / eval_steps) * eval_steps)


class StopAt(TrainerCallback):
    """Stop at step ``step`` (None: never) and checkpoint there, whatever NoFinalCheckpoint or early
    stopping decided; an early stop before it is checkpointed too, so the race's stop is always on disk."""

    def __init__(self, step: int | None = None):
        self.step = step

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.step is not None and self.step > state.max_steps:
            raise ValueError(f"asked to stop at step {self.step} of a {state.max_steps}-step run")

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.step is not None and state.global_step >= self.step:
            control.should_training_stop = True
            control.should_evaluate = control.should_save = True

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if control.should_training_stop and state.global_step > 0:
            control.should_save = True  # BestState turned it off when it stopped early


def checkpoint_step(checkpoint: str | Path) -> int:
    return int(Path(checkpoint).name.split("-")[1])


def nothing_left(checkpoint: str | Path, stop: int | None, budget: int, patience: int) -> bool:
    """Whether the run that left ``checkpoint`` has no step left to train: it reached ``stop`` or
    its budget, or early stopping's patience ran out there."""
    step = checkpoint_step(checkpoint)
    bad_evals = json.loads((Path(checkpoint) / "best_state.json").read_text())["bad_evals"]
    return step >= (budget if stop is None else min(stop, budget)) or bool(patience and bad_evals >= patience)


def replay(trainer: Any, checkpoint: str | Path) -> float:
    """Finish a run from ``checkpoint`` without training a step: the Trainer's state (steps, log
    history) from it, and the callbacks' start and end (BestState restores the best weights, the
    loggers write their files). Returns the seconds trained: none."""
    trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
    trainer.control = trainer.callback_handler.on_train_begin(trainer.args, trainer.state, trainer.control)
    trainer.control = trainer.callback_handler.on_train_end(trainer.args, trainer.state, trainer.control)
    return 0.0
