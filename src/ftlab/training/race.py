"""One cell of the race trained to a rung, and scored per example on the validation split.

The cell trains in its checkpoint directory (``train.checkpoint_dir``, keyed by the cell's identity,
like an interrupted run), stops at the rung's evaluation and checkpoints there, so the next rung and
the train stage go on from that step: no step is trained twice. Its validation scores at each rung
are kept beside the checkpoints, under the same identity (``<checkpoint_dir>/race/``): a rerun of
the race with nothing changed decides again from them without training, also after the train stage
has finished the cell and removed its checkpoints. Only the validation split is scored here.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ftlab.core.config import Cell
from ftlab.core.io import write_json
from ftlab.learning.config import Config
from ftlab.training.identity import cell_identity, cell_key
from ftlab.training.scoring import scored
from ftlab.training.stopping import StopAt, budget_steps, rung_step
from ftlab.training.train import _resume, fit_until, setup
from ftlab.training.trainer import build_trainer

log = logging.getLogger(__name__)


NO_CHECKPOINTS = ("race.enabled needs train.checkpoint_dir (null disables checkpoints): the race keeps each cell's "
                  "checkpoint at its rung for the next rung and the train stage to go on from")


def _scores_dir(cfg: Config, cell: Cell) -> Path:
    if cfg.train.checkpoint_dir is None:
        raise ValueError(NO_CHECKPOINTS)
    return cfg.train.checkpoint_dir / "race" / f"{cell.method}-{cell.name}-{cell_key(cell_identity(cfg, cell))}"


def train_to(cfg: Config, cell: Cell, share: float) -> dict:
    """Train ``cell`` (``cfg``: its method's searched params applied) to the evaluation at or after
    ``share`` of its step budget; its step then, the budget, the seconds trained and the validation
    split's per-example scores (the task's ``example_scores``) of its best weights so far."""
    s = setup(cfg, cell.method, None, cell.seed, cell.train_size)
    if s.ckpt_root is None:
        raise ValueError(NO_CHECKPOINTS)
    resume, best = _resume(cfg, cell.method, s.ckpt_root)
    stop = StopAt()
    trainer = build_trainer(cfg, cell.method, s.model, s.tokenizer, s.ds, s.train_eval, s.labels, s.ckpt_root,
                            cell.seed, True, best, s.groups, [stop], resume is not None)
    budget = budget_steps(trainer)
    stop.step = rung_step(share, budget, cfg.train.eval_steps)
    seconds = fit_until(cfg, s, trainer, resume, stop)
    task = cfg.task_type()
    predictions = scored(task, s.model, trainer, s.splits["validation"], s.ds["validation"], s.labels, {},
                         cfg.train.eval_batch_size)
    return {"step": trainer.state.global_step, "target": stop.step, "budget": budget, "seconds": seconds,
            "scores": task.example_scores(predictions, s.labels)}


def rung_result(cfg: Config, cell: Cell, share: float, spent: float) -> dict:
    """``cell`` at the rung ``share``: from the kept scores of its identity, else trained there.
    ``spent``: seconds the race trained this cell before (its cost so far includes them)."""
    folder = _scores_dir(cfg, cell)
    meta, array = folder / f"rung-{share:g}.json", folder / f"rung-{share:g}.npy"
    if meta.is_file() and array.is_file():
        log.info("%s %s: validation scores at %g of the budget found, not training", cell.method, cell.name, share)
        return {**json.loads(meta.read_text()), "scores": np.load(array)}
    result = train_to(cfg, cell, share)
    result["seconds"] = round(spent + result["seconds"], 3)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(array, result["scores"])
    write_json(meta, {k: v for k, v in result.items() if k != "scores"})  # last: it marks the rung complete
    return result
