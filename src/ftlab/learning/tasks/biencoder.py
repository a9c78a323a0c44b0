"""Pairs as a bi-encoder (``task.pair_encoding: bi``): each text encoded alone by one shared encoder.

The cross-encoder (the default) reads ``[CLS] a [SEP] b [SEP]`` as one sequence. A bi-encoder reads
``a`` and ``b`` apart through the same weights, mean-pools each over its real tokens and
L2-normalises the result: all-MiniLM-L6-v2's own sentence-transformers modules (Transformer,
Pooling(mean), Normalize), so the trained model exports as a ``SentenceTransformer`` whose
``encode`` gives the embeddings that search and deduplication use.

- **Regression** (STS-B): the score is the cosine of the two embeddings; the loss is CoSENT
  (sentence-transformers' ``CoSENTLoss``, reused for its math: a softmax over every pair of pairs in
  the batch whose gold scores are ordered, pushing their cosines into the same order). It trains
  the ranking that Spearman, the task's primary metric, scores, and needs no rescaling of the
  targets; sentence-transformers recommends it over the cosine-MSE loss. The cosine is reported on
  the targets' scale as ``low + (1 + cos) / 2 · (high − low)`` (train split's range): monotone, so
  Spearman and Pearson are those of the cosine; the RMSE of an uncalibrated cosine means little.
- **Classification** (NLI, paraphrase): softmax over a linear head on ``(u, v, |u − v|)``, as SBERT
  trains NLI (``SoftmaxLoss``), cross-entropy.

Every method that changes weights applies to the one shared encoder (LoRA's adapters sit in its
layers and serve both texts). peft's prompt methods prepend virtual tokens to ``input_ids`` only,
so the second text would not get them: they are refused at config load (``PairTask.check``).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn
from transformers import AutoModel
from transformers.modeling_outputs import SequenceClassifierOutput

from ftlab.learning.modeling import _load, _name_labels, _text_config, load_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from ftlab.core.config import ModelConfig

PAIR = "pair_"  # the second text's columns: pair_input_ids, pair_attention_mask
INPUTS = ("input_ids", "attention_mask")
COSENT_SCALE = 20.0  # sentence-transformers' default inverse temperature


def cosine_to_score(cosine: Any, low: float, high: float) -> Any:
    """A cosine in [-1, 1] on the targets' scale [low, high]: linear, so ranks and Pearson are kept."""
    return low + (1.0 + cosine) / 2.0 * (high - low)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """sentence-transformers' Pooling(mean): the mean of the last hidden states over real tokens."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class BiEncoder(nn.Module):
    """One shared encoder for both texts; a cosine score (regression) or a (u, v, |u − v|) softmax head.

    ``target`` is the train split's (low, high) score range for regression (saved with the weights).
    """

    def __init__(self, encoder: PreTrainedModel, num_labels: int, dropout: float,
                 problem_type: str = "single_label_classification", target: tuple[float, float] = (0.0, 1.0)):
        super().__init__()
        self.problem_type = problem_type
        self.encoder = encoder
        self.config: Any = encoder.config
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # unused by mean pooling: keep it out of the trainable counts
        self.register_buffer("target_low", torch.tensor(float(target[0])))
        self.register_buffer("target_high", torch.tensor(float(target[1])))
        self.classifier: nn.Linear | None = None
        if problem_type != "regression":
            self.dropout = nn.Dropout(dropout)
            self.classifier = nn.Linear(3 * self.config.hidden_size, num_labels)
            nn.init.normal_(self.classifier.weight, std=0.02)
            nn.init.zeros_(self.classifier.bias)

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def score_range(self) -> tuple[float, float]:
        """(low, high): the train targets' range a regressor's cosine is reported on."""
        return float(cast(torch.Tensor, self.target_low)), float(cast(torch.Tensor, self.target_high))

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean-pooled, L2-normalised sentence embeddings: what the exported model's ``encode`` returns."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return nn.functional.normalize(mean_pool(hidden, attention_mask).float(), dim=-1)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                pair_input_ids: torch.Tensor | None = None, pair_attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **kwargs: Any) -> SequenceClassifierOutput:
        if input_ids is None or pair_input_ids is None:
            raise ValueError("a bi-encoder takes both texts' token ids: input_ids and pair_input_ids")
        mask_a = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        mask_b = pair_attention_mask if pair_attention_mask is not None else torch.ones_like(pair_input_ids)
        u, v = self.embed(input_ids, mask_a), self.embed(pair_input_ids, mask_b)
        loss = None
        if self.classifier is None:
            cosine = (u * v).sum(-1)
            low, high = cast(torch.Tensor, self.target_low), cast(torch.Tensor, self.target_high)
            logits = cosine_to_score(cosine, low, high).unsqueeze(-1)
            if labels is not None:
                loss = cosent_loss().compute_loss_from_embeddings([u, v], labels.float())
        else:
            logits = self.classifier(self.dropout(torch.cat([u, v, (u - v).abs()], dim=-1)))
            if labels is not None:
                loss = nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


@functools.cache
def cosent_loss() -> Any:
    """sentence-transformers' CoSENT loss, used through its embedding-level entry point (which never
    reads ``model``); imported on first use, so that cross-encoder runs do not pay for the import."""
    from sentence_transformers.sentence_transformer.losses import CoSENTLoss

    return CoSENTLoss(model=None, scale=COSENT_SCALE)


def tokenize_pairs(a: list[str], b: list[str], tokenizer: Any, max_length: int) -> dict[str, list]:
    """Each text of each pair alone, without token type ids: ``input_ids``/``attention_mask`` for the
    first, ``pair_input_ids``/``pair_attention_mask`` for the second."""
    first = tokenizer(a, truncation=True, max_length=max_length, return_token_type_ids=False)
    second = tokenizer(b, truncation=True, max_length=max_length, return_token_type_ids=False)
    return {**{k: first[k] for k in INPUTS}, **{PAIR + k: second[k] for k in INPUTS}}


class PairCollator:
    """Pads each text of a batch of pairs to its own longest row (or a multiple of ``pad_to_multiple_of``)."""

    def __init__(self, tokenizer: Any, pad_to_multiple_of: int | None = None):
        from transformers import DataCollatorWithPadding

        self.pad = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        first = self.pad([{k: f[k] for k in INPUTS} for f in features])
        second = self.pad([{k: f[PAIR + k] for k in INPUTS} for f in features])
        batch = {**first, **{PAIR + k: v for k, v in second.items()}}
        if "labels" in features[0]:
            batch["labels"] = torch.tensor(np.array([f["labels"] for f in features]))
        return batch


@torch.inference_mode()
def predict_pairs(model: nn.Module, dataset: Any, collator: Any, batch_size: int, bf16: bool = False) -> list[np.ndarray]:
    """The model's output for every pair of ``dataset`` in its order, batched by length (longer text)."""
    model.eval()
    device = next(model.parameters()).device
    columns = [*INPUTS, *(PAIR + k for k in INPUTS)]
    lengths = [max(len(x), len(y)) for x, y in zip(dataset["input_ids"], dataset[PAIR + "input_ids"], strict=True)]
    order = np.argsort(lengths, kind="stable")
    out: list[np.ndarray] = [np.empty(0)] * len(order)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        features = [{k: dataset[int(i)][k] for k in columns} for i in rows]
        batch = {k: v.to(device) for k, v in collator(features).items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(**batch).logits.float().cpu().numpy()
        for row, i in zip(logits, rows, strict=True):
            out[i] = row
    return out


def build_bi_model(cfg: Any, labels: list[str], problem_type: str, target: tuple[float, float] = (0.0, 1.0)) -> nn.Module:
    """A fresh bi-encoder over the pretrained encoder (``model.name``), head randomly initialised."""
    encoder = _load("model", AutoModel, cfg, config=_text_config(cfg))
    return _name_labels(BiEncoder(encoder, len(labels), cfg.dropout, problem_type, target), labels, cfg)


def zero_shot_cosine(model: ModelConfig, a: list[str], b: list[str], batch_size: int = 64) -> np.ndarray:
    """Cosine similarity of the pretrained encoder's mean-pooled embeddings of ``a[i]`` and ``b[i]``.

    Correlations do not depend on scale, so the Spearman of this is comparable with a trained
    regressor's, and Spearman is what the report's paired tests compare; its squared error is not,
    and the baseline maps the cosine in [-1, 1] linearly onto the train targets' range, as a
    bi-encoder's prediction is, only so that the predictions frame holds scores in the targets' units
    (its RMSE stays uncalibrated). Not clipped: clipping negative cosines to 0 would tie them and
    change the Spearman.
    """
    tokenizer = load_tokenizer(model)
    encoder = _load("model", AutoModel, model).eval()  # safetensors only, errors naming model.name

    @torch.inference_mode()
    def embed(texts: list[str]) -> torch.Tensor:
        out = []
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start : start + batch_size], padding=True, truncation=True,
                              max_length=model.max_length, return_tensors="pt")
            hidden = encoder(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append(nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))
        return torch.cat(out)

    return (embed(a) * embed(b)).sum(-1).numpy().astype(np.float64)
