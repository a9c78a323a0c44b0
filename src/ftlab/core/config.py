"""The one typed configuration of ftlab, filled from ``params.yaml``.

Every value is checked when the file is loaded, so a typo or an out-of-range value fails at once
with the field's dotted name (``method_params.lora.r``), never minutes later inside training.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from ftlab.core.params import ConfigError, key_lines_of, line_of, parse_params, read_params, set_dotted
from ftlab.learning.methods import METHODS
from ftlab.learning.tasks import TASKS, Task, TaskOptions, make_task

log = logging.getLogger(__name__)

BUILTIN_DEMO = "builtin:demo"
BUILTIN_MODEL = "builtin:all-MiniLM-L6-v2"
SPLITS = ("train", "validation", "test")


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DemoConfig(Strict):
    n_samples: int = Field(3000, ge=20)
    label_noise: float = Field(0.05, ge=0.0, lt=0.5)


def _hub_splits() -> dict[Literal["train", "validation", "test"], str]:
    # a def, not a lambda: mypy infers a lambda's dict as dict[str, str], not the Literal keys
    return {"train": "train", "validation": "validation", "test": "test"}


class DataConfig(Strict):
    # "builtin:demo"; a CSV/TSV/JSONL/Parquet path (or CoNLL for token_classification);
    # {train: path, validation: path, test: path}; or "hub:<dataset name>" for users with a network.
    # The columns read are the task's (task.text_column, task.label_column, ...).
    source: str | dict[Literal["train", "validation", "test"], Path] = BUILTIN_DEMO
    # how CSV/TSV files quote: "csv", fields in double quotes with inner quotes doubled (Python's
    # csv, pandas, spreadsheets); "none", a quote is an ordinary character (GLUE-style raw TSV);
    # "auto", csv when some field starts with a quote and the whole file parses that way, else none
    quoting: Literal["auto", "csv", "none"] = "auto"
    hub_config: str | None = None
    hub_splits: dict[Literal["train", "validation", "test"], str] = Field(default_factory=_hub_splits)
    validation_size: float = Field(0.1, gt=0.0, lt=0.5)
    test_size: float = Field(0.2, gt=0.0, lt=0.5)
    max_train_samples: PositiveInt | None = None
    max_validation_samples: PositiveInt | None = None
    max_test_samples: PositiveInt | None = None
    demo: DemoConfig = DemoConfig()
    prepared_dir: Path = Path("data/prepared")

    @field_validator("source", mode="before")
    @classmethod
    def _source_type(cls, v: Any) -> Any:
        shapes = "a file path, builtin:demo, hub:NAME, or one file per split {train: FILE, validation: FILE, test: FILE}"
        if isinstance(v, dict):
            for split, file in v.items():
                if split not in SPLITS:
                    raise ValueError(f"unknown split {split!r} (the splits are train, validation, test); give {shapes}")
                if not isinstance(file, (str, Path)):
                    raise ValueError(f"{split}: {file!r} is not a file path; give {shapes}")
        elif not isinstance(v, (str, Path)):
            raise ValueError(f"{'null' if v is None else f'a {type(v).__name__}'} is not a data source; give {shapes}")
        return str(v) if isinstance(v, Path) else v

    @field_validator("source")
    @classmethod
    def _source_has_train(cls, v: Any) -> Any:
        if isinstance(v, dict) and "train" not in v:
            raise ValueError("a per-split source needs at least a 'train' file")
        if isinstance(v, str) and not v.strip():
            raise ValueError("must not be empty")
        return v


TrainSize = PositiveInt | Literal["all"]


def _all_sizes() -> list[TrainSize]:  # a def, not a lambda, for the same reason as _hub_splits
    return ["all"]


class Cell(NamedTuple):
    """One training run of a comparison: a method at one seed and one training-set size."""

    method: str
    seed: int
    train_size: int | Literal["all"]

    @property
    def name(self) -> str:  # the run directory under <train.output_dir>/<method>/
        return f"s{self.seed}-n{self.train_size}"


class ModelConfig(Strict):
    name: str = BUILTIN_MODEL
    # "mean": mean of the last hidden states over real tokens (how all-MiniLM-L6-v2 was trained);
    # "cls": the model's own sequence-classification head ([CLS] pooler for BERT).
    pooling: Literal["mean", "cls"] = "mean"
    max_length: int = Field(128, ge=8, le=8192)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)  # before the head
    # dropout inside the pretrained network (hidden states and attention); null: the checkpoint's own
    # (0.1 for MiniLM). 0 skips the random masks, a sixth of a CPU step: 1.17x in paired epochs of
    # benchmarks/compile.py, 1.0-1.1x in whole runs (throughput_no_dropout.json), at the same SST-2
    # accuracy; it changes the regularisation, so it is no default
    encoder_dropout: float | None = Field(None, ge=0.0, lt=1.0)
    trust_remote_code: bool = False


class TrainConfig(Strict):
    epochs: float = Field(3.0, gt=0)
    max_steps: int = Field(-1, ge=-1)  # -1: run `epochs`; otherwise stop after this many steps
    # at least this many optimizer steps, however few examples: without it a 100-example run of a
    # data-size sweep gets 10 steps and measures the step budget, not the method; 0 disables
    min_steps: int = Field(0, ge=0)
    batch_size: PositiveInt = 32
    eval_batch_size: PositiveInt = 128
    eval_steps: PositiveInt = 50
    logging_steps: PositiveInt = 10
    weight_decay: float = Field(0.01, ge=0.0)
    warmup_ratio: float = Field(0.06, ge=0.0, lt=1.0)
    early_stopping_patience: int = Field(4, ge=0)  # evaluations without improvement; 0 disables
    # validation metric for early stopping and the best weights: one of the task's metrics or "loss";
    # null: the task's primary metric (accuracy, spearman, micro_f1, f1), in its own direction
    metric_for_best: str | None = None
    train_eval_samples: int = Field(512, ge=1)  # train subset scored at each eval: gap and drift
    threads: PositiveInt | None = None  # torch threads; None: all cores
    # bf16 autocast (fp32 weights, bf16 matmuls) or plain fp32. auto: bf16 where the hardware does it
    # natively (a bf16 GPU; a CPU with AVX512-BF16 or AMX, where a MiniLM step ran 1.9x faster), else fp32
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    # torch.compile (inductor) of the model's training and evaluation steps. auto: off, because no
    # measurement has shown it to pay yet: on a 2-core fp32 CPU a compiled MiniLM step ran no faster
    # than eager and its first step took minutes (benchmarks/results/compile.json); on: compile,
    # with batches padded to length buckets (pad_to_multiple_of, 16 if null) so graphs are reused
    compile: Literal["auto", "on", "off"] = "auto"
    # pad every batch to a multiple of this many tokens; null: to its longest row (16 when compiled)
    pad_to_multiple_of: PositiveInt | None = None
    output_dir: Path = Path("runs")
    # checkpoints of unfinished runs (every eval_steps), resumed by the next run with the same
    # config and removed when the run finishes; null disables checkpointing
    checkpoint_dir: Path | None = Path(".checkpoints")


class ValidationConfig(Strict):
    """Thresholds of the Great Expectations suite run on the prepared splits."""

    min_text_chars: int = Field(1, ge=1)
    max_text_chars: int = Field(5000, ge=1)
    min_examples_per_class: int = Field(5, ge=1)  # in every split
    max_class_ratio: float = Field(10.0, ge=1.0)  # largest / smallest class in train
    max_duplicate_fraction: float = Field(0.01, ge=0.0, le=1.0)  # repeated texts within a split
    max_leaked_rows: int = Field(0, ge=0)  # validation/test texts also in train; test texts also in validation
    max_numeric_text_fraction: float = Field(0.1, ge=0.0, le=1.0)  # texts that are plain numbers (a wrong column?)
    # texts wrapped whole in double quotes, like a CSV field read without its quoting; any text with
    # doubled quotes inside such a wrapping ("he said ""hi""") fails on its own
    max_quote_wrapped_fraction: float = Field(0.05, ge=0.0, le=1.0)


class ChecksConfig(Strict):
    """Overfitting and drift verdicts per method."""

    warn_gap: float = Field(0.05, ge=0.0, le=1.0)  # train − validation primary metric that warns
    overfit_gap: float = Field(0.10, ge=0.0, le=1.0)  # ... that counts as overfitting
    rising_evals: int = Field(3, ge=1)  # val loss up while train loss down, k evals in a row
    fail_on: Literal["never", "warn", "overfit"] = "never"  # verdict that fails the pipeline


class ReportConfig(Strict):
    """What the comparison report recommends within."""

    memory_budget_mb: float | None = Field(None, gt=0)
    time_budget_s: float | None = Field(None, gt=0)
    # a costlier method must be significantly better than a cheaper one, and by more than this
    tolerance: float = Field(0.01, ge=0.0, le=1.0)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)  # of the intervals and the paired tests
    dir: Path = Path("reports")  # validation, checks and the comparison are written here


class PipelineConfig(Strict):
    """How the Prefect flow runs the stages (dvc repro runs them one at a time)."""

    max_parallel: PositiveInt = 1  # cells trained at once (on a GPU machine: at most one per GPU)
    retries: int = Field(1, ge=0)  # per task, for transient failures
    retry_delay_s: float = Field(5.0, ge=0.0)
    # where tasks run: "threads" of the flow's process; "dask", the worker processes of a Dask cluster
    # (a local one of max_parallel one-thread workers, or the one at dask_address); "ray", a Ray
    # cluster (pip install "ftlab[ray]"). Dask and Ray need a Prefect server: PREFECT_API_URL.
    task_runner: Literal["threads", "dask", "ray"] = "threads"
    dask_address: str | None = None  # scheduler of a running cluster, e.g. tcp://10.0.0.5:8786
    ray_address: str | None = None  # head of a running cluster, e.g. ray://10.0.0.5:10001; None: local


class SearchConfig(Strict):
    """A per-method hyperparameter search on the validation split, so methods meet at their own best."""

    enabled: bool = False
    trials: PositiveInt = 4  # per method, drawn from the method's grid; the defaults are always one
    lr_factors: list[float] = Field(default_factory=lambda: [0.3, 1.0, 3.0])  # times the method's lr
    train_size: TrainSize = "all"  # examples the trials train on (seed: the first of `seeds`)

    @field_validator("lr_factors")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if not v or any(f <= 0 for f in v):
            raise ValueError("must list positive factors")
        return v


class CiConfig(Strict):
    """The quality gate of CI retraining (``ftlab ci``)."""

    # fail when the recommended method's primary test metric is worse than the base branch's by more
    # than this (in the metric's own units and direction)
    max_metric_drop: float = Field(0.02, ge=0.0)

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "max_accuracy_drop" in data:
            if "max_metric_drop" in data:
                raise ValueError("max_accuracy_drop was renamed max_metric_drop; give only max_metric_drop")
            log.warning("ci.max_accuracy_drop is now ci.max_metric_drop (a drop in the task's primary metric)")
            data = {**{k: v for k, v in data.items() if k != "max_accuracy_drop"}, "max_metric_drop": data["max_accuracy_drop"]}
        return data


def _task_options_model() -> Any:
    """Every registered task's options, told apart by ``type``: ``task: {type: regression, ...}``."""
    models = [create_model(f"{cls.__name__}Task", __base__=cls.Options, type=(Literal[name], name))  # type: ignore[arg-type]
              for name, cls in TASKS.items()]
    return Annotated[Union[tuple(models)], Field(discriminator="type")]  # noqa: UP007  a runtime tuple of types


if TYPE_CHECKING:
    TaskParams = TaskOptions
else:
    TaskParams = _task_options_model()


def _default_task() -> Any:
    return TASKS["classification"].Options(type="classification")


class PromoteConfig(Strict):
    """Where ``ftlab promote`` packages the recommended cell as a standalone model."""

    name: str = Field("ftlab-model", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # also dvc.yaml's artifact name
    dir: Path = Path("models")


class MonitorConfig(Strict):
    """``ftlab monitor``: new data against the promoted model's training reference (README: monitor)."""

    input: Path = Path("data/incoming")  # the file, or directory of files, the scheduled monitor reads
    out_dir: Path = Path("reports/monitor")
    # text descriptors and confidence: normed Wasserstein distance (in reference standard deviations);
    # 0.2, not Evidently's 0.1: two samples of 200 demo texts already differed by 0.115
    numeric_threshold: float = Field(0.2, gt=0.0)
    # predicted-class shares: Jensen-Shannon distance above this
    category_threshold: float = Field(0.1, gt=0.0, le=1.0)
    # sentence embeddings: ROC AUC of a classifier telling new rows from reference rows above this
    embedding_threshold: float = Field(0.6, gt=0.5, le=1.0)
    # with labels in the input: accuracy more than this below the reference's
    max_accuracy_drop: float = Field(0.05, ge=0.0, le=1.0)
    min_drifted: PositiveInt = 1  # signals that must drift for the verdict "drift"
    min_rows: PositiveInt = 30  # fewer new rows than this: refuse to judge
    queue_size: int = Field(100, ge=0)  # unlabelled new rows: how many to queue for labelling (0: none)


def _method_params_model() -> type[Strict]:
    """One field per registered method, typed by that method's own Params class."""
    fields: dict[str, Any] = {name: (m.Params, m.Params()) for name, m in METHODS.items()}
    return create_model("MethodParams", __base__=Strict, **fields)


if TYPE_CHECKING:
    MethodParams = Strict  # built at runtime; to mypy, a config section like the others
else:
    MethodParams = _method_params_model()


class Config(Strict):
    seed: int = 42  # the data split; also the training seed when `seeds` is not given
    methods: list[str] = Field(default_factory=lambda: ["full", "llrd", "lora", "prompt_tuning"])
    seeds: list[int] = Field(default_factory=list)  # every method trains once per seed
    train_sizes: list[TrainSize] = Field(default_factory=_all_sizes)  # ... and once per size
    task: TaskParams = Field(default_factory=_default_task)  # the problem: `ftlab tasks` lists them
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    validation: ValidationConfig = ValidationConfig()
    checks: ChecksConfig = ChecksConfig()
    report: ReportConfig = ReportConfig()
    pipeline: PipelineConfig = PipelineConfig()
    search: SearchConfig = SearchConfig()
    ci: CiConfig = CiConfig()
    promote: PromoteConfig = PromoteConfig()
    monitor: MonitorConfig = MonitorConfig()
    method_params: MethodParams = MethodParams()

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("must list at least one method")
        unknown = [m for m in v if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; known: {sorted(METHODS)}")
        if len(set(v)) != len(v):
            raise ValueError("lists a method twice")
        return v

    @model_validator(mode="before")
    @classmethod
    def _seeds_default_to_seed(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("seeds"):
            data = {**data, "seeds": [data.get("seed", 42)]}
        return data

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, data: Any) -> Any:
        """``task.type`` defaults to classification; data.text_column/label_column (before tasks) move to task."""
        if not isinstance(data, dict):
            return data
        task = dict(data.get("task") or {})
        task.setdefault("type", "classification")
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
        set_dotted(raw, dotted, value)
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
