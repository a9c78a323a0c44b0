"""Full fine-tuning: the baseline every other method is measured against."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from ftlab.learning.methods.base import Method, MethodParams, register

if TYPE_CHECKING:
    from torch import nn


class FullParams(MethodParams):
    lr: float = Field(1e-4, gt=0, le=10, description=(
        "1e-4, not the 5e-5 of BERT-base recipes: a small model at batch 32 learns faster than that allows. One "
        "epoch on 1,024 SST-2 examples: 0.784 at 5e-5, 0.868 at 1e-4, 0.870 at 1.5e-4 and 2e-4; the SST-2 sweep's"
        " search chose 1.5e-4 (benchmarks/results/sweep_sst2.json)"))
    train_embeddings: bool = Field(True, description=(
        "false: the word-embedding table keeps its pretrained rows. It is half of MiniLM's parameters, and "
        "training it means a dense gradient and optimizer state for every row, though a batch touches a few "
        "hundred: freezing saves that memory, but no time on a 2-core CPU (1.00x in "
        "benchmarks/results/compile.json; SST-2 accuracy 0.866 vs 0.868 in throughput.json). A decoder with tied "
        "embeddings then keeps its output layer too: it is the same matrix."))


@register
class Full(Method):
    name = "full"
    summary = "every parameter, one learning rate"
    Params = FullParams

    def prepare(self, model: nn.Module, params: Any, task_type: str = "SEQ_CLS") -> nn.Module:
        model.requires_grad_(True)
        if not params.train_embeddings:
            # every model here has it (transformers' and ftlab's heads), though nn.Module does not declare it
            model.get_input_embeddings().requires_grad_(False)
        return model
