"""Any other peft method (LoHa, LoKr, VeRA, AdaLoRA, OFT, ...) named by its ``peft_type``.

The named methods cover the common cases; this one makes the rest of the peft family usable
from params.yaml without code: ``method_params.adapter: {peft_type: LOHA, options: {r: 8}}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from ftlab.learning.methods.base import MethodParams, PeftMethod, head_modules, register
from ftlab.learning.methods.lora import infer_target_modules

if TYPE_CHECKING:
    from torch import nn


class AdapterParams(MethodParams):
    lr: float = Field(1e-3, gt=0, le=10, description="learning rate (the head and every trained parameter)")
    peft_type: str = Field("LOHA", description="the peft method by its PeftType name: LOHA, LOKR, VERA, ADALORA, ...")
    options: dict[str, Any] = Field(default_factory=dict, description="passed to the peft config as-is")

    @field_validator("peft_type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        v = v.upper()
        if v == cls.model_fields["peft_type"].default:  # every run's config.yaml holds it: importing
            return v  # peft (5 s) to confirm it would slow every stage that reads a run
        from peft import PeftType

        if v not in PeftType.__members__:
            raise ValueError(f"unknown peft_type {v!r}; peft knows {sorted(PeftType.__members__)}")
        return v


@register
class Adapter(PeftMethod):
    name = "adapter"
    summary = "any other peft method by peft_type (LoHa, LoKr, VeRA, AdaLoRA, ...) + head"
    Params = AdapterParams

    def peft_config(self, model: nn.Module, params: Any, task_type: str):
        from peft import PEFT_TYPE_TO_CONFIG_MAPPING

        config_cls = PEFT_TYPE_TO_CONFIG_MAPPING[params.peft_type]
        options = {"modules_to_save": head_modules(model), **params.options}
        if "target_modules" in config_cls.__dataclass_fields__ and "target_modules" not in options:
            options["target_modules"] = infer_target_modules(model)
        return config_cls(task_type=task_type, **options)
