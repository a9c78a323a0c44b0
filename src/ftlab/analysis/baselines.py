"""Baselines every comparison is measured against, so a user sees whether fine-tuning pays at all.

* the task's trivial predictor (majority class, mean score, most frequent label set, all-O),
  fitted on the train split;
* the task's own extra baselines (:meth:`~ftlab.learning.tasks.Task.extra_baselines`): for pair
  regression with a mean-pooling sentence encoder, the zero-shot cosine similarity of the two
  texts' embeddings: all-MiniLM-L6-v2 was trained for exactly that, and reaches a Spearman of 0.810
  on the shared STS-B dev file (0.82 on STS-B's test set, its model card says) with no training at
  all. It is the untrained form of a bi-encoded regressor (``task.pair_encoding: bi``).

The linear probe (frozen encoder, head only) is a method, ``probe``, trained like the others.
Each baseline comes with its per-example scores on the test split, so the report can run the
same paired test against it as between methods.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from ftlab.data.prepare import load_prepared
from ftlab.learning.config import Config

log = logging.getLogger(__name__)


def baselines(cfg: Config) -> list[dict[str, Any]]:
    """``{"name", "value", "scores"}`` for every baseline that applies to the config's task and model."""
    task = cfg.task_type()
    splits, labels = load_prepared(cfg)
    name, predictions = task.trivial(splits["train"], splits["test"], labels)
    extra = task.extra_baselines(cfg.model, splits["train"], splits["test"])
    return [_row(task, n, p, labels) for n, p in [(name, predictions), *extra.items()]]


def _row(task: Any, name: str, predictions: pd.DataFrame, labels: list[str]) -> dict[str, Any]:
    value = task.test_metrics(predictions, labels)[task.primary.name]
    log.info("baseline %s: %s %.4f", name, task.primary.label, value)
    return {"name": name, "value": float(value), "scores": task.example_scores(predictions, labels)}
