"""The linear probe: the head alone trains on a frozen encoder; the baseline that says whether
fine-tuning the encoder pays at all."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from ftlab.learning.methods.base import Method, MethodParams, register
from ftlab.learning.methods.freeze import train_top_layers

if TYPE_CHECKING:
    from torch import nn


class ProbeParams(MethodParams):
    lr: float = Field(1e-2, gt=0, le=10, description="learning rate (the head and every trained parameter)")


@register
class Probe(Method):
    name = "probe"
    summary = "linear probe: the head alone on the frozen encoder (a baseline)"
    Params = ProbeParams

    def prepare(self, model: nn.Module, params: Any, task_type: str = "SEQ_CLS") -> nn.Module:
        return train_top_layers(model, 0)  # freeze with k = 0, at a head-sized learning rate
