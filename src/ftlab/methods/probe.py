"""The linear probe: the head alone trains on a frozen encoder; the baseline that says whether
fine-tuning the encoder pays at all."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from ftlab.methods.base import Method, MethodParams, register

if TYPE_CHECKING:
    from torch import nn


class ProbeParams(MethodParams):
    lr: float = Field(1e-2, gt=0, le=10)


@register
class Probe(Method):
    name = "probe"
    summary = "linear probe: the head alone on the frozen encoder (a baseline)"
    Params = ProbeParams

    def prepare(self, model: nn.Module, params: Any, task_type: str = "SEQ_CLS") -> nn.Module:
        from ftlab.modeling import model_parts

        model.requires_grad_(False)
        for _, p in model_parts(model).head:
            p.requires_grad_(True)
        return model
