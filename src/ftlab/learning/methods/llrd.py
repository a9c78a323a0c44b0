"""Layer-wise learning-rate decay: every parameter trains, lower layers more gently.

One optimizer param group per depth: the head at the base lr (depth 0), the top transformer layer
at lr × decay, the next at lr × decay², ..., the embeddings deepest at lr × decay^(layers + 1).
Lower layers hold general features that large updates would destroy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from ftlab.learning.methods.base import Method, MethodParams, register

if TYPE_CHECKING:
    from torch import nn


class LLRDParams(MethodParams):
    lr: float = Field(1e-4, gt=0, le=10, description="learning rate (the head and every trained parameter)")
    decay: float = Field(0.9, gt=0, le=1, description="each layer down from the top trains at lr × decay^depth; embeddings lowest")


@register
class LLRD(Method):
    name = "llrd"
    summary = "every parameter; lr × decay^depth per layer, head at lr, embeddings deepest"
    Params = LLRDParams

    def param_groups(self, model: nn.Module, params: Any, weight_decay: float) -> list[dict]:
        from ftlab.learning.modeling import model_parts

        parts = model_parts(model)
        named = [("head", parts.head)]
        named += [(f"layer.{i}", layer) for i, layer in reversed(list(enumerate(parts.layers)))]
        named.append(("embeddings", parts.embeddings))
        return [
            {
                "name": group,
                "params": [p for _, p in members],
                "lr": params.lr * params.decay**depth,
                "weight_decay": weight_decay,
            }
            for depth, (group, members) in enumerate(named)
            if members
        ]
