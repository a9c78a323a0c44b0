"""Baselines every comparison is measured against, so a user sees whether fine-tuning pays at all.

* the task's trivial predictor (majority class, mean score, most frequent label set, all-O),
  fitted on the train split;
* for pair regression with a mean-pooling sentence encoder, the zero-shot cosine similarity of the
  two texts' embeddings: all-MiniLM-L6-v2 was trained for exactly that, and reaches a Spearman
  of 0.810 on the shared STS-B dev file (0.82 on STS-B's test set, its model card says) with no
  training at all. It is the untrained form of a bi-encoded regressor (``task.pair_encoding: bi``).

The linear probe (frozen encoder, head only) is a method, ``probe``, trained like the others.
Each baseline comes with its per-example scores on the test split, so the report can run the
same paired test against it as between methods.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from ftlab.data.prepare import load_prepared
from ftlab.learning.config import Config

log = logging.getLogger(__name__)


def baselines(cfg: Config) -> list[dict[str, Any]]:
    """``{"name", "value", "scores"}`` for every baseline that applies to the config's task and model."""
    task = cfg.task_type()
    splits, labels = load_prepared(cfg)
    name, predictions = task.trivial(splits["train"], splits["test"], labels)
    out = [_row(task, name, predictions, labels)]
    if task.name == "regression" and "text_pair" in splits["test"] and cfg.model.pooling == "mean":
        test = splits["test"]
        from ftlab.learning.tasks.biencoder import cosine_to_score

        cosine = zero_shot_cosine(cfg, list(test["text"]), list(test["text_pair"]))
        low, high = float(splits["train"]["label"].min()), float(splits["train"]["label"].max())
        out.append(_row(task, "zero_shot_cosine", test.assign(prediction=cosine_to_score(cosine, low, high)), labels))
    return out


def _row(task: Any, name: str, predictions: pd.DataFrame, labels: list[str]) -> dict[str, Any]:
    value = task.test_metrics(predictions, labels)[task.primary.name]
    log.info("baseline %s: %s %.4f", name, task.primary.label, value)
    return {"name": name, "value": float(value), "scores": task.example_scores(predictions, labels)}


def zero_shot_cosine(cfg: Config, a: list[str], b: list[str], batch_size: int = 64) -> np.ndarray:
    """Cosine similarity of the pretrained encoder's mean-pooled embeddings of ``a[i]`` and ``b[i]``.

    Correlations do not depend on scale, so the Spearman of this is comparable with a trained
    regressor's, and Spearman is what the report's paired tests compare; its squared error is not,
    and :func:`baselines` maps the cosine in [-1, 1] linearly onto the train targets' range, as a
    bi-encoder's prediction is, only so that the predictions frame holds scores in the targets' units
    (its RMSE stays uncalibrated). Not clipped: clipping negative cosines to 0 would tie them and
    change the Spearman.
    """
    import torch
    from transformers import AutoModel

    from ftlab.learning.modeling import load_tokenizer, resolve_model_name

    tokenizer = load_tokenizer(cfg.model)
    encoder = AutoModel.from_pretrained(resolve_model_name(cfg.model.name)).eval()

    @torch.inference_mode()
    def embed(texts: list[str]) -> torch.Tensor:
        out = []
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start : start + batch_size], padding=True, truncation=True,
                              max_length=cfg.model.max_length, return_tensors="pt")
            hidden = encoder(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))
        return torch.cat(out)

    return (embed(a) * embed(b)).sum(-1).numpy().astype(np.float64)
