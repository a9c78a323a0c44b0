"""Full fine-tuning: the baseline every other method is measured against."""

from __future__ import annotations

from pydantic import Field

from ftlab.methods.base import Method, MethodParams, register


class FullParams(MethodParams):
    # 1e-4, not the 5e-5 of BERT-base recipes: a small model at batch 32 learns faster than that
    # allows. One epoch on 1,024 SST-2 examples: 0.784 at 5e-5, 0.868 at 1e-4, 0.870 at 1.5e-4 and
    # 2e-4; the SST-2 sweep's search chose 1.5e-4 (benchmarks/results/sweep_sst2.json)
    lr: float = Field(1e-4, gt=0, le=10)


@register
class Full(Method):
    name = "full"
    summary = "every parameter, one learning rate"
    Params = FullParams
