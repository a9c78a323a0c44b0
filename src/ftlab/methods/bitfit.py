"""BitFit (Ben Zaken et al., 2022): only the bias terms and the head train."""

from typing import Any

from pydantic import Field
from torch import nn

from ftlab.methods.base import Method, MethodParams, register
from ftlab.modeling import model_parts


class BitFitParams(MethodParams):
    lr: float = Field(1e-3, gt=0, le=10)


@register
class BitFit(Method):
    name = "bitfit"
    summary = "only bias terms + head"
    Params = BitFitParams

    def prepare(self, model: nn.Module, params: Any) -> nn.Module:
        head = {name for name, _ in model_parts(model).head}
        for name, p in model.named_parameters():
            p.requires_grad_(name in head or name.endswith(".bias"))
        return model
