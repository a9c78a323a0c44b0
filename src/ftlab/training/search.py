"""Per-method hyperparameter search on the validation split, so that methods meet at their own best.

One shared learning rate favours whichever method it happens to suit: prompt tuning wants rates
hundreds of times those of full fine-tuning. Each method therefore gets the same small budget of
trials from its own grid: its default learning rate times ``search.lr_factors``, crossed with the
method's ``search_space`` (LoRA's rank, the number of virtual tokens). The defaults are always a
trial, the rest are drawn from the grid with the first seed, and the trial with the best
validation score wins. The test split is never looked at.
"""

from __future__ import annotations

import itertools
import logging
import random
import tempfile
from pathlib import Path
from typing import Any

from ftlab.learning.config import Config
from ftlab.learning.methods import get_method

log = logging.getLogger(__name__)


def grid(cfg: Config, method: str) -> list[dict[str, Any]]:
    """Every candidate setting of ``method``, the current defaults first."""
    params = cfg.params_for(method)
    space = {"lr": [float(f"{params.lr * f:.3g}") for f in cfg.search.lr_factors], **get_method(method).search_space}
    default = {k: getattr(params, k) for k in space}
    points = [dict(zip(space, values, strict=True)) for values in itertools.product(*space.values())]
    return [default] + [p for p in points if p != default]


def trials(cfg: Config, method: str) -> list[dict[str, Any]]:
    """The ``search.trials`` settings to try: the defaults, then a seeded draw from the rest of the grid."""
    first, *rest = grid(cfg, method)
    return [first, *random.Random(cfg.seeds[0]).sample(rest, min(len(rest), cfg.search.trials - 1))]


def search(cfg: Config, method: str, data_dir: Path | None = None) -> dict:
    """Train every trial of ``method`` and return the chosen setting with each trial's validation score."""
    from ftlab.training.train import best_metric, train  # torch: loaded when trials run, not to list a grid

    metric = best_metric(cfg)
    results = []
    for i, values in enumerate(trials(cfg, method), 1):
        log.info("%s: search trial %d/%d %s", method, i, cfg.search.trials, values)
        trial_cfg = cfg.with_method_params(method, values).model_copy(
            update={"train": cfg.train.model_copy(update={"checkpoint_dir": None})})
        with tempfile.TemporaryDirectory(prefix="ftlab-search-") as tmp:
            metrics = train(trial_cfg, method, Path(tmp) / "run", data_dir,
                            seed=cfg.seeds[0], train_size=cfg.search.train_size)
        results.append({"params": values, "validation": metrics["best_validation"]["value"],
                        "train_seconds": metrics["cost"]["train_seconds"]})
    sign = 1 if metric.higher_is_better else -1
    best = max(results, key=lambda r: sign * r["validation"])
    return {"method": method, "enabled": True, "metric": f"validation_{metric.name}", "chosen": best["params"],
            "train_size": cfg.search.train_size, "seed": cfg.seeds[0], "trials": results}
