"""What pair classification and pair regression share: ``task.pair_encoding``, cross or bi.

``cross`` (the default) encodes a pair jointly, ``[CLS] a [SEP] b [SEP]``, as every sequence task
does. ``bi`` encodes each text alone with the one shared encoder and scores the two embeddings
(:mod:`ftlab.learning.tasks.biencoder`): what sentence-transformers trains, and what search and deduplication use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
from pydantic import Field, model_validator

from ftlab.learning.tasks.sequence import SequenceOptions, SequenceTask

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from ftlab.core.config import ModelConfig
    from ftlab.learning.config import Config

# peft methods that prepend virtual tokens (or key/value prefixes) to input_ids: the second text of a
# bi-encoded pair, encoded apart, would not get them
PROMPT_METHODS = ("prompt_tuning", "prefix_tuning", "p_tuning")
PROMPT_PEFT_TYPES = ("PROMPT_TUNING", "MULTITASK_PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "ADAPTION_PROMPT", "CPT")
PROMPT_REASON = ("peft prepends its virtual tokens to the first text's input_ids only; a bi-encoder encodes "
                 "the second text apart, without them")


class PairOptions(SequenceOptions):
    pair_encoding: Literal["cross", "bi"] = Field("cross", description=(
        "cross: the pair as one sequence through the encoder; bi: each text alone through the shared encoder, "
        "then cosine (regression) or a softmax head on (u, v, |u - v|) (classification)"))

    @model_validator(mode="after")
    def _bi_needs_a_pair(self) -> PairOptions:
        if self.pair_encoding == "bi" and self.text_pair_column is None:
            raise ValueError("task.pair_encoding: bi encodes the two texts of a pair apart; "
                             "set task.text_pair_column (or use pair_encoding: cross)")
        return self


class PairTask(SequenceTask):
    """A sequence task whose pairs may be bi-encoded (``task.pair_encoding: bi``)."""

    Options = PairOptions

    @property
    def bi(self) -> bool:
        return getattr(self.opts, "pair_encoding", "cross") == "bi"

    def exportable(self) -> bool:
        return self.bi  # a sentence-transformers encoder

    def pipeline_tag(self) -> str:
        return "sentence-similarity" if self.bi else self.name

    def check(self, cfg: Config) -> None:
        if not self.bi:
            return
        if cfg.model.pooling != "mean":
            raise ValueError("task.pair_encoding: bi mean-pools each text (sentence-transformers' pooling); "
                             f"model.pooling: {cfg.model.pooling} applies to the cross-encoder only")
        for method in cfg.methods:
            reason = self.bi_refusal(method, cfg)
            if reason:
                raise ValueError(f"methods: method {method!r} cannot train task {self.name!r} with "
                                 f"task.pair_encoding: bi: {reason}")

    def bi_refusal(self, method: str, cfg: Config) -> str | None:
        """Why ``method`` cannot train this task bi-encoded, or None."""
        if method in PROMPT_METHODS:
            return PROMPT_REASON
        if method == "probe" and self.problem_type == "regression":
            return ("a bi-encoded regression has no head (the score is the cosine of the two embeddings), so "
                    "the probe would train nothing; its untrained form is the zero-shot cosine baseline")
        if method == "adapter" and cfg.params_for("adapter").peft_type in PROMPT_PEFT_TYPES:
            return PROMPT_REASON
        return None

    def tokenize(self, df: pd.DataFrame, tokenizer: Any, max_length: int, labels: list[str]) -> Any:
        if not self.bi:
            return super().tokenize(df, tokenizer, max_length, labels)
        from datasets import Dataset

        from ftlab.learning.tasks.biencoder import tokenize_pairs

        enc = tokenize_pairs(list(df["text"]), list(df["text_pair"]), tokenizer, max_length)
        return Dataset.from_dict({**enc, "labels": self.targets(df, labels)})

    def collator(self, tokenizer: Any, pad_to_multiple_of: int | None = None) -> Any:
        if not self.bi:
            return super().collator(tokenizer, pad_to_multiple_of)
        from ftlab.learning.tasks.biencoder import PairCollator

        return PairCollator(tokenizer, pad_to_multiple_of)

    def build_model(self, cfg: ModelConfig, labels: list[str], train: pd.DataFrame | None = None) -> nn.Module:
        if not self.bi:
            return super().build_model(cfg, labels, train)
        from ftlab.learning.tasks.biencoder import build_bi_model

        return build_bi_model(cfg, labels, self.problem_type)

    def test_outputs(self, model: nn.Module, tokenizer: Any, dataset: Any, batch_size: int, bf16: bool) -> list[np.ndarray] | None:
        if not self.bi:
            return None
        from ftlab.learning.tasks.biencoder import predict_pairs

        return predict_pairs(model, dataset, self.collator(tokenizer), batch_size, bf16)
