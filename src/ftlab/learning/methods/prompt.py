"""Soft-prompt methods through peft: prompt tuning, prefix tuning and p-tuning.

The transformer stays frozen; only virtual tokens (and the head) train, so they need learning
rates two orders of magnitude above full fine-tuning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

from pydantic import Field, model_validator

from ftlab.learning.methods.base import MethodParams, PeftMethod, register

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedConfig


class PromptParams(MethodParams):
    lr: float = Field(3e-2, gt=0, le=10, description="learning rate (the head and every trained parameter)")
    num_virtual_tokens: int = Field(20, ge=1, description="trained virtual tokens prepended to every input")


class PromptTuningParams(PromptParams):
    init: Literal["random", "text"] = Field("text", description="start the soft prompt from init_text's token embeddings, or at random")
    init_text: str = Field("Classify the sentiment of this review:", description="the text the soft prompt starts from (cut to num_virtual_tokens tokens)")

    @model_validator(mode="after")
    def _text_given(self):
        if self.init == "text" and not self.init_text.strip():
            raise ValueError("init_text must not be empty when init is 'text'")
        return self


class PromptMethod(PeftMethod):
    """A soft-prompt method: how many virtual tokens is what its search tries besides the lr."""

    search_space: ClassVar[dict[str, list[Any]]] = {"num_virtual_tokens": [10, 20, 40]}


@register
class PromptTuning(PromptMethod):
    name = "prompt_tuning"
    summary = "soft prompt of virtual token embeddings (random or text init) + head"
    Params = PromptTuningParams
    config_class = "PromptTuningConfig"

    def config_options(self, model: nn.Module, params: Any) -> dict[str, Any]:
        from peft import PromptTuningInit

        text = params.init == "text"
        return {"num_virtual_tokens": params.num_virtual_tokens,
                "prompt_tuning_init": PromptTuningInit.TEXT if text else PromptTuningInit.RANDOM,
                "prompt_tuning_init_text": params.init_text if text else None,
                "tokenizer_name_or_path": cast("PreTrainedConfig", model.config).name_or_path if text else None}


class PrefixParams(PromptParams):
    lr: float = Field(1e-2, gt=0, le=10, description="learning rate (the head and every trained parameter)")
    projection: bool = Field(False, description="reparameterise the prefix through an MLP (more stable, more params)")
    encoder_hidden_size: int = Field(128, ge=1, description="hidden size of the prompt encoder (MLP or LSTM)")


@register
class PrefixTuning(PromptMethod):
    name = "prefix_tuning"
    summary = "trained key/value prefixes in every attention layer + head"
    Params = PrefixParams
    config_class = "PrefixTuningConfig"

    def config_options(self, model: nn.Module, params: Any) -> dict[str, Any]:
        return {"num_virtual_tokens": params.num_virtual_tokens, "prefix_projection": params.projection,
                "encoder_hidden_size": params.encoder_hidden_size}


class PTuningParams(PromptParams):
    lr: float = Field(3e-3, gt=0, le=10, description="learning rate (the head and every trained parameter)")
    encoder_hidden_size: int = Field(128, ge=1, description="hidden size of the prompt encoder (MLP or LSTM)")
    encoder: Literal["MLP", "LSTM"] = Field("MLP", description="the prompt encoder that produces the virtual tokens")


@register
class PTuning(PromptMethod):
    name = "p_tuning"
    summary = "virtual tokens produced by a small trained prompt encoder (MLP/LSTM) + head"
    Params = PTuningParams
    config_class = "PromptEncoderConfig"

    def config_options(self, model: nn.Module, params: Any) -> dict[str, Any]:
        return {"num_virtual_tokens": params.num_virtual_tokens, "encoder_hidden_size": params.encoder_hidden_size,
                "encoder_reparameterization_type": params.encoder}
