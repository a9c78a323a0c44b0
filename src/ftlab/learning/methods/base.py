"""The interface every fine-tuning method implements, and the registry that holds them.

A method decides two things: which parameters train (``prepare``), and at which learning rate
each of them trains (``param_groups``). Everything else (data, Trainer, metrics, saving) is shared.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from peft import PeftConfig
    from torch import nn

METHODS: dict[str, Method] = {}


class MethodParams(BaseModel):
    """Hyperparameters every method has; subclasses add their own and set their default lr."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lr: float = Field(5e-5, gt=0, le=10, description="learning rate (the head and every trained parameter)")
    epochs: float | None = Field(None, gt=0, description="overrides train.epochs for this method")


class Method:
    """A fine-tuning strategy. Subclasses set ``name``, ``summary`` and ``Params``."""

    name: ClassVar[str]
    summary: ClassVar[str]
    Params: ClassVar[type[MethodParams]] = MethodParams
    saves_adapter: ClassVar[bool] = False  # True: the run saves only the adapter, not the model
    # hyperparameters besides lr that `search` tries, with their candidate values
    search_space: ClassVar[dict[str, list[Any]]] = {}

    def prepare(self, model: nn.Module, params: Any, task_type: str = "SEQ_CLS") -> nn.Module:
        """Return the model to train, with ``requires_grad`` set on exactly what this method trains.
        ``task_type`` is the task's peft TaskType (SEQ_CLS, TOKEN_CLS), for the peft methods."""
        model.requires_grad_(True)
        return model

    def param_groups(self, model: nn.Module, params: Any, weight_decay: float) -> list[dict]:
        """Optimizer parameter groups; by default one group, every trainable parameter at ``params.lr``."""
        trainable = [p for p in model.parameters() if p.requires_grad]
        return [{"name": "all", "params": trainable, "lr": params.lr, "weight_decay": weight_decay}]


class PeftMethod(Method):
    """A method implemented by a peft config; the classifier head always trains with the adapter."""

    saves_adapter = True
    config_class: ClassVar[str]  # the peft config class, e.g. "LoraConfig" (peft loads when a model is built)

    def config_options(self, model: nn.Module, params: Any) -> dict[str, Any]:
        """The peft config's options from this method's params, besides the task type and the head."""
        raise NotImplementedError

    def peft_config(self, model: nn.Module, params: Any, task_type: str) -> PeftConfig:
        import peft

        config = getattr(peft, self.config_class)
        return config(task_type=task_type, modules_to_save=head_modules(model), **self.config_options(model, params))

    def prepare(self, model: nn.Module, params: Any, task_type: str = "SEQ_CLS") -> nn.Module:
        from peft import get_peft_model

        return get_peft_model(model, self.peft_config(model, params, task_type))


def head_modules(model: nn.Module) -> list[str]:
    """Names of the modules that form the task's head, for peft's ``modules_to_save``.

    A language model (causal_lm) has no new head: its output layer (lm_head, often tied to the input
    embeddings) and final norm are pretrained, so the adapter trains alone, the usual peft recipe.
    """
    from ftlab.learning.modeling import model_parts

    get_output = getattr(model, "get_output_embeddings", None)
    if get_output is not None and get_output() is not None:
        return []

    names = {n.rsplit(".", 1)[0] for n, _ in model_parts(model).head}
    return sorted(names)


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: add one instance of ``cls`` to the registry under ``cls.name``."""
    if cls.name in METHODS:
        raise ValueError(f"method {cls.name!r} registered twice")
    METHODS[cls.name] = cls()
    return cls
