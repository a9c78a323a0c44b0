"""The heads ftlab puts on a pretrained encoder where transformers' own do not serve every method.

The task picks the head (``Task.build_model``) and, for sequence heads, the loss by transformers'
``problem_type``; :mod:`ftlab.learning.modeling` loads the encoder under it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput, TokenClassifierOutput

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class MeanPoolClassifier(nn.Module):
    """Encoder + mean of the last hidden states over real tokens + dropout + linear head.

    all-MiniLM-L6-v2 was trained as a sentence encoder with mean pooling; its [CLS] pooler was not,
    so reading the mean is the better default for it (see the pooling benchmark in the README).
    The loss follows ``problem_type`` as in transformers' ``*ForSequenceClassification``: cross-entropy,
    BCE over independent labels, or MSE. For regression the head predicts in units of the train
    split's standard deviation around its mean (``target_mean``/``target_std``, saved with the
    weights): the output is on the data's scale and the loss does not depend on it.
    """

    def __init__(self, encoder: PreTrainedModel, num_labels: int, dropout: float,
                 problem_type: str = "single_label_classification", target: tuple[float, float] = (0.0, 1.0)):
        super().__init__()
        self.problem_type = problem_type
        self.register_buffer("target_mean", torch.tensor(float(target[0])))
        self.register_buffer("target_std", torch.tensor(float(target[1])))
        self.encoder = encoder
        self.config: Any = encoder.config  # its fields (hidden_size, ...) depend on the model type
        if getattr(encoder, "pooler", None) is not None:
            # unused here: keep it out of the trainable-parameter counts (torch accepts None for a submodule)
            encoder.pooler = None
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.config.hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)

    @property
    def device(self) -> torch.device:  # peft's prompt methods read it, as on a PreTrainedModel
        return self.classifier.weight.device

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        past_key_values: Any = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        # past_key_values: the trained key/value prefixes of peft's prefix tuning
        inputs = {"input_ids": input_ids, "inputs_embeds": inputs_embeds, "cache": past_key_values}
        inputs = {k: v for k, v in inputs.items() if v is not None}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        hidden = self.encoder(attention_mask=attention_mask, **inputs).last_hidden_state
        if attention_mask is None:
            pooled = hidden.mean(dim=1)
        else:
            mask = attention_mask[:, -hidden.shape[1] :].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if self.problem_type == "regression":
            mean, std = cast(torch.Tensor, self.target_mean), cast(torch.Tensor, self.target_std)
            scaled, logits = logits.float(), logits.float() * std + mean
            if labels is not None:
                loss = nn.functional.mse_loss(scaled.squeeze(-1), (labels.float() - mean) / std)
        elif labels is not None and self.problem_type == "multi_label_classification":
            loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float())
        elif labels is not None:
            loss = nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


class TokenClassifier(nn.Module):
    """Encoder + dropout + a linear tag head on every token's last hidden state.

    transformers' ``*ForTokenClassification`` would do, but peft's prompt methods prepend virtual
    tokens without shifting the tags (peft 0.21) and prefix tuning needs the encoder's cache
    argument; this head scores the last ``len(labels)`` positions and passes the prefixes on, so
    every method trains token classification.
    """

    def __init__(self, encoder: PreTrainedModel, num_labels: int, dropout: float):
        super().__init__()
        self.encoder = encoder
        self.config: Any = encoder.config
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # unused: see MeanPoolClassifier
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.config.hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)

    @property
    def device(self) -> torch.device:
        return self.classifier.weight.device

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, past_key_values: Any = None, **kwargs: Any) -> TokenClassifierOutput:
        inputs = {"input_ids": input_ids, "inputs_embeds": inputs_embeds, "cache": past_key_values,
                  "token_type_ids": token_type_ids}
        hidden = self.encoder(attention_mask=attention_mask, **{k: v for k, v in inputs.items() if v is not None}).last_hidden_state
        logits = self.classifier(self.dropout(hidden))
        loss = None
        if labels is not None:
            scored = logits[:, -labels.shape[1] :]  # virtual tokens, if any, come first
            loss = nn.functional.cross_entropy(scored.reshape(-1, scored.shape[-1]), labels.reshape(-1), ignore_index=-100)
        return TokenClassifierOutput(loss=loss, logits=logits)
