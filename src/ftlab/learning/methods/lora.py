"""LoRA (Hu et al., 2021) and DoRA (Liu et al., 2024) through peft: low-rank updates + head."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from ftlab.learning.methods.base import MethodParams, PeftMethod, register

# Attention projections to adapt, by the names each model family uses, most specific first:
# BERT/RoBERTa/ELECTRA, DeBERTa-v2/v3, DistilBERT, LLaMA/Mistral/Qwen/Gemma, GPT-2.
TARGET_CANDIDATES = (
    ("query_proj", "value_proj"),
    ("query", "value"),
    ("q_lin", "v_lin"),
    ("q_proj", "v_proj"),
    ("c_attn",),
)


def infer_target_modules(model: nn.Module) -> list[str]:
    """The query/value projection names of ``model``, found from its module names."""
    leaves = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    for names in TARGET_CANDIDATES:
        if set(names) <= leaves:
            return list(names)
    raise ValueError(
        "cannot infer the attention projections to adapt for this model; "
        "set method_params.<method>.target_modules"
    )

if TYPE_CHECKING:
    from torch import nn


class LoraParams(MethodParams):
    lr: float = Field(1e-3, gt=0, le=10, description="learning rate (the head and every trained parameter)")
    r: int = Field(8, ge=1, description="rank of the low-rank update")
    alpha: float = Field(16.0, gt=0, description="scale of the update: alpha / r")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout on the adapter's input")
    target_modules: list[str] | None = Field(None, description="None: inferred from the model")


@register
class Lora(PeftMethod):
    name = "lora"
    summary = "low-rank adapters on the attention query/value projections + head"
    Params = LoraParams
    search_space: ClassVar[dict[str, list[Any]]] = {"r": [4, 8, 16]}
    config_class = "LoraConfig"
    use_dora = False

    def config_options(self, model: nn.Module, params: Any) -> dict[str, Any]:
        return {"r": params.r, "lora_alpha": params.alpha, "lora_dropout": params.dropout, "use_dora": self.use_dora,
                "target_modules": params.target_modules or infer_target_modules(model)}


@register
class Dora(Lora):
    name = "dora"
    summary = "weight-decomposed LoRA: low-rank direction + learned magnitude + head"
    use_dora = True
