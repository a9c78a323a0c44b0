"""IA3 (Liu et al., 2022) through peft: learned rescaling of keys, values and FFN activations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from ftlab.learning.methods.base import MethodParams, PeftMethod, register

if TYPE_CHECKING:
    from torch import nn


class IA3Params(MethodParams):
    lr: float = Field(1e-2, gt=0, le=10, description="learning rate (the head and every trained parameter)")
    target_modules: list[str] | None = Field(None, description="None: peft's default for the model type")
    feedforward_modules: list[str] | None = Field(None, description="which target modules are feed-forward layers (scaled on their input); None: peft's default")


@register
class IA3(PeftMethod):
    name = "ia3"
    summary = "learned scaling vectors on keys, values and feed-forward activations + head"
    Params = IA3Params
    config_class = "IA3Config"

    def config_options(self, model: nn.Module, params: Any) -> dict[str, Any]:
        return {"target_modules": params.target_modules, "feedforward_modules": params.feedforward_modules}
