"""What the sequence-level tasks share: one text (or a pair) in, one output vector out.

Classification, regression and multi-label classification differ only in their targets, loss and
metrics; tokenising a text or a text pair, the pooled head and the baseline rows are the same.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import Field

from ftlab.learning.tasks.base import Task, TaskOptions

if TYPE_CHECKING:
    from torch import nn

    from ftlab.core.config import ModelConfig

log = logging.getLogger(__name__)


class SequenceOptions(TaskOptions):
    # a second text encoded with the first as a pair ([CLS] a [SEP] b [SEP] for BERT): NLI, paraphrase, STS
    text_pair_column: str | None = Field(None, description="the second text of a pair (NLI, paraphrase, STS); null: one text per row")


class SequenceTask(Task):
    """A task whose model reads one text (or a pair) and emits one vector of logits."""

    Options = SequenceOptions
    problem_type = "single_label_classification"

    def tokenize(self, df: pd.DataFrame, tokenizer: Any, max_length: int, labels: list[str]) -> Any:
        from datasets import Dataset

        pairs = list(df["text_pair"]) if "text_pair" in df else None
        enc = tokenizer(list(df["text"]), pairs, truncation=True, max_length=max_length)
        truncated = sum(len(ids) >= max_length for ids in enc["input_ids"])
        if truncated:
            log.warning("%d text(s) longer than model.max_length=%d were truncated", truncated, max_length)
        return Dataset.from_dict({**enc, "labels": self.targets(df, labels)})

    def targets(self, df: pd.DataFrame, labels: list[str]) -> Any:
        """The ``labels`` the model's loss takes."""
        return df["label"].to_numpy()

    def build_model(self, cfg: ModelConfig, labels: list[str], train: pd.DataFrame | None = None) -> nn.Module:
        from ftlab.learning.modeling import build_model

        return build_model(cfg, labels, self.problem_type)

    def frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """The input columns of a predictions frame."""
        return df[[c for c in ("text", "text_pair") if c in df]].reset_index(drop=True)


def stack(logits: list[np.ndarray]) -> np.ndarray:
    """Per-row output vectors as one (rows, outputs) float array."""
    return np.stack(logits).astype(np.float64)


def with_probabilities(out: pd.DataFrame, probs: np.ndarray, labels: list[str]) -> pd.DataFrame:
    """``out`` with a ``prob_<label>`` column per class, joined at once: inserted one by one they took
    10 s for 5,000 classes (pandas copies its blocks as they fragment)."""
    columns = pd.DataFrame(probs.astype(np.float32), columns=[f"prob_{name}" for name in labels], index=out.index)
    return pd.concat([out, columns], axis=1)
