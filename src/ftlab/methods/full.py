"""Full fine-tuning: the baseline every other method is measured against."""

from __future__ import annotations

from pydantic import Field

from ftlab.methods.base import Method, MethodParams, register


class FullParams(MethodParams):
    lr: float = Field(5e-5, gt=0, le=10)


@register
class Full(Method):
    name = "full"
    summary = "every parameter, one learning rate"
    Params = FullParams
