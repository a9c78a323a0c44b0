"""Partial freezing: only the top k transformer layers and the head train."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from ftlab.learning.methods.base import Method, MethodParams, register

if TYPE_CHECKING:
    from torch import nn


class FreezeParams(MethodParams):
    lr: float = Field(1e-4, gt=0, le=10, description="learning rate (the head and every trained parameter)")
    k: int = Field(2, ge=0, description="top layers to train; 0 trains the head alone (a linear probe)")


@register
class Freeze(Method):
    name = "freeze"
    summary = "only the top k transformer layers + head"
    Params = FreezeParams

    def prepare(self, model: nn.Module, params: Any, task_type: str = "SEQ_CLS") -> nn.Module:
        return train_top_layers(model, params.k)


def train_top_layers(model: nn.Module, k: int) -> nn.Module:
    """``model`` with only its head and its top ``k`` transformer layers trainable."""
    from ftlab.learning.modeling import model_parts

    parts = model_parts(model)
    if k > len(parts.layers):
        raise ValueError(f"method_params.freeze.k={k} but the model has {len(parts.layers)} layers")
    model.requires_grad_(False)
    top = parts.layers[len(parts.layers) - k :]
    for _, p in parts.head + [np for layer in top for np in layer]:
        p.requires_grad_(True)
    return model
