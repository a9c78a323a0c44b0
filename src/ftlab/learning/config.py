"""The whole typed configuration: the core sections, the task and every method's hyperparameters.

It lives beside the method and task registries because it is built from them: ``task`` is one of the
registered tasks' options, told apart by ``type``, and ``method_params`` has one field per registered
method. The registries are light (pydantic and numpy; torch and transformers load only when a model
is built), so loading a config stays quick.
"""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

import yaml
from pydantic import Field, ValidationError, ValidationInfo, create_model, field_validator, model_validator

from ftlab.core.config import (
    Cell,
    ChecksConfig,
    CiConfig,
    DataConfig,
    ModelConfig,
    MonitorConfig,
    PipelineConfig,
    PromoteConfig,
    RaceConfig,
    ReportConfig,
    SearchConfig,
    Strict,
    TrainConfig,
    TrainSize,
    ValidationConfig,
)
from ftlab.core.params import ConfigError, key_lines_of, line_of, parse_params, read_params, set_dotted
from ftlab.learning.methods import METHODS
from ftlab.learning.tasks import TASKS, Task, TaskOptions, make_task

log = logging.getLogger(__name__)


def _all_sizes() -> list[TrainSize]:  # a def, not a lambda: mypy infers a lambda's list as list[str | int]
    return ["all"]


def _task_options_model() -> Any:
    """Every registered task's options, told apart by ``type``: ``task: {type: regression, ...}``."""
    models = [create_model(f"{cls.__name__}Task", __base__=cls.Options, type=(Literal[name], name))  # type: ignore[arg-type]
              for name, cls in TASKS.items()]
    return Annotated[Union[tuple(models)], Field(discriminator="type")]  # noqa: UP007  a runtime tuple of types


if TYPE_CHECKING:
    TaskParams = TaskOptions
else:
    TaskParams = _task_options_model()


DEFAULT_TASK = "classification"  # task.type when params.yaml names none
# the grid's lists: what one item is, and an example value, for the error naming an empty one
_LISTS = {"methods": ("method", "[full, lora]"), "seeds": ("seed", "[42]"), "train_sizes": ("train size", "[all]")}


def _default_task() -> Any:
    return TASKS[DEFAULT_TASK].Options(type=DEFAULT_TASK)


def default_task() -> Task:
    """The task of a params file that names none."""
    return make_task(_default_task())


def _method_params_model() -> type[Strict]:
    """One field per registered method, typed by that method's own Params class."""
    fields: dict[str, Any] = {name: (m.Params, m.Params()) for name, m in METHODS.items()}
    return create_model("MethodParams", __base__=Strict, **fields)


if TYPE_CHECKING:
    MethodParams = Strict  # built at runtime; to mypy, a config section like the others
else:
    MethodParams = _method_params_model()


class Config(Strict):
    """params.yaml: the grid (methods × seeds × train sizes), the task and one section per concern."""

    seed: int = Field(42, description="the data split; also the training seed when `seeds` is not given")
    methods: list[str] = Field(default_factory=lambda: ["full", "llrd", "lora", "prompt_tuning"],
                               description="the methods compared: `ftlab methods` lists them")
    seeds: list[int] = Field(default_factory=list, description="every method trains once per seed")
    train_sizes: list[TrainSize] = Field(default_factory=_all_sizes, description="every method trains once per training-set size (\"all\": the whole train split)")
    task: TaskParams = Field(default_factory=_default_task, description="the problem: `ftlab tasks` lists them")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    validation: ValidationConfig = ValidationConfig()
    checks: ChecksConfig = ChecksConfig()
    report: ReportConfig = ReportConfig()
    pipeline: PipelineConfig = PipelineConfig()
    search: SearchConfig = SearchConfig()
    race: RaceConfig = RaceConfig()
    ci: CiConfig = CiConfig()
    promote: PromoteConfig = PromoteConfig()
    monitor: MonitorConfig = MonitorConfig()
    method_params: MethodParams = Field(MethodParams(), description="each method's own hyperparameters; keys left out keep the method's defaults")

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: list[str]) -> list[str]:
        unknown = [m for m in v if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; known: {sorted(METHODS)}")
        if len(set(v)) != len(v):
            raise ValueError("lists a method twice")
        return v

    @model_validator(mode="before")
    @classmethod
    def _seeds_default_to_seed(cls, data: Any) -> Any:
        """No ``seeds`` key: train at ``seed``. A key given empty is not this default (see _listed)."""
        if isinstance(data, dict) and "seeds" not in data:
            data = {**data, "seeds": [data.get("seed", 42)]}
        return data

    @field_validator("methods", "seeds", "train_sizes", mode="before")
    @classmethod
    def _listed(cls, v: Any, info: ValidationInfo) -> Any:
        """The grid is methods × seeds × train sizes, and both drivers expand it: an empty (or null)
        list gave no cell to `ftlab plan` (which then deleted the earlier plan) and no train stage to
        dvc.yaml's matrix, while `ftlab` fell back to ``seed`` for seeds. Refused here, where every
        driver's every command reads the params, so they cannot disagree."""
        if v is None or (isinstance(v, list) and not v):
            what, example = _LISTS[info.field_name or ""]
            raise ValueError(f"must list at least one {what}, e.g. {example}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, data: Any) -> Any:
        """``task.type`` defaults to classification; data.text_column/label_column (before tasks) move to task."""
        if not isinstance(data, dict):
            return data
        task = dict(data.get("task") or {})
        task.setdefault("type", DEFAULT_TASK)
        data_section = data.get("data")
        if isinstance(data_section, dict) and {"text_column", "label_column"} & data_section.keys():
            moved = {k: data_section[k] for k in ("text_column", "label_column") if k in data_section}
            log.warning("data.%s moved to task.%s", ", data.".join(moved), ", task.".join(moved))
            task = {**moved, **task}
            data = {**data, "data": {k: v for k, v in data_section.items() if k not in moved}}
        return {**data, "task": task}

    @model_validator(mode="after")
    def _task_fits(self) -> Config:
        task = self.task_type()
        task.check(self)  # options that depend on the rest of the config (task.pair_encoding: bi)
        for method in self.methods:
            if method in task.unsupported_methods:
                raise ValueError(f"methods: method {method!r} cannot train task {task.name!r}: {task.unsupported_methods[method]}")
        if self.train.metric_for_best is not None:
            try:
                task.metric(self.train.metric_for_best)
            except KeyError as e:
                raise ValueError(f"train.metric_for_best: {e.args[0]}") from None
        return self

    @field_validator("seeds", "train_sizes")
    @classmethod
    def _distinct(cls, v: list) -> list:
        if len(set(v)) != len(v):
            raise ValueError(f"lists a value twice: {v}")
        return v

    @model_validator(mode="after")
    def _splits_leave_training_data(self) -> Config:
        if self.data.validation_size + self.data.test_size >= 0.9:
            raise ValueError("data.validation_size + data.test_size must leave at least 10% to train")
        return self

    def task_type(self) -> Task:
        """The configured task, bound to its options."""
        return make_task(self.task)

    def params_for(self, method: str) -> Any:
        return getattr(self.method_params, method)

    def cells(self, method: str | None = None, seed: int | None = None,
              train_size: int | Literal["all"] | None = None) -> list[Cell]:
        """Every run of the comparison, methods × train sizes × seeds (the one grid: dvc.yaml's train
        matrix expands the same three lists), or the runs with the method, seed or size given."""
        return [Cell(m, s, n) for m in ([method] if method else self.methods)
                for n in ([train_size] if train_size else self.train_sizes)
                for s in ([seed] if seed is not None else self.seeds)]

    def for_cell(self, cell: Cell) -> Config:
        """This config narrowed to one cell: what its run directory records and its checkpoints hash."""
        return self.model_copy(update={"methods": [cell.method], "seeds": [cell.seed], "train_sizes": [cell.train_size]})

    def with_method_params(self, method: str, values: dict[str, Any]) -> Config:
        """This config with some of ``method``'s hyperparameters replaced (validated)."""
        params = type(self.params_for(method)).model_validate({**self.params_for(method).model_dump(), **values})
        return self.model_copy(update={"method_params": self.method_params.model_copy(update={method: params})})


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load and validate a params file (None: all defaults), raising ConfigError naming the field."""
    raw: dict[str, Any] = {}
    where, text = "defaults", ""
    if path is not None:
        path = Path(path)
        where = str(path)
        text = read_params(path)
        raw = parse_params(path, text)
    for dotted, value in (overrides or {}).items():
        # a copy: a later dotted override below this key must not change the caller's dict (a test
        # module's task dict was changed for every later test in its process this way)
        set_dotted(raw, dotted, copy.deepcopy(value))
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        lines = [f"invalid params ({where}):"]
        key_lines = key_lines_of(text)
        for err in e.errors():
            loc = [str(p) for p in err["loc"]]
            if loc[:1] == ["task"] and len(loc) > 2 and loc[1] in TASKS:  # the union's tag, not a key
                del loc[1]
            field = ".".join(loc) or "<root>"
            msg = "unknown key (misspelled?)" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
            named = re.match(r"(?:Value error, )?([a-z_]+(?:\.[a-z_]+)*): (.*)", msg, re.S) if not loc else None
            if named:  # a check across sections names its key in the message
                field, msg = named.groups()
            overridden = any(field == k or field.startswith(k + ".") for k in overrides or {})
            lines.append(f"  {field}: {msg}{'' if overridden else line_of(key_lines, field)}")
        raise ConfigError("\n".join(lines)) from None


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML, every default spelled out, for the run directory."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
