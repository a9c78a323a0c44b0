"""BitFit (Ben Zaken et al., 2022): only the bias terms and the head train."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from ftlab.learning.methods.base import Method, MethodParams, register

if TYPE_CHECKING:
    from torch import nn


class BitFitParams(MethodParams):
    lr: float = Field(1e-3, gt=0, le=10, description="learning rate (the head and every trained parameter)")


@register
class BitFit(Method):
    name = "bitfit"
    summary = "only bias terms + head"
    Params = BitFitParams

    def prepare(self, model: nn.Module, params: Any, task_type: str = "SEQ_CLS") -> nn.Module:
        from ftlab.learning.modeling import model_parts

        head = {name for name, _ in model_parts(model).head}
        for name, p in model.named_parameters():
            p.requires_grad_(name in head or name.endswith(".bias"))
        return model
