"""The sections of ftlab's typed configuration, filled from ``params.yaml``.

Every value is checked when the file is loaded, so a typo or an out-of-range value fails at once
with the field's dotted name (``data.test_size``), never minutes later inside training. The whole
``Config``, with the task and the method hyperparameters that the registries define, is
``ftlab.learning.config``: it sits beside the registries, so this ground floor imports none of them.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

from ftlab.core.builtins import BUILTIN_DEMO, BUILTIN_MODEL, SPLITS

log = logging.getLogger(__name__)


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DemoConfig(Strict):
    """The built-in demo dataset (``data.source: builtin:demo``), generated from the seed."""

    n_samples: int = Field(3000, ge=20, description="sentences generated (also the size of the builtin:copy/reverse/sort datasets)")
    label_noise: float = Field(0.05, ge=0.0, lt=0.5, description="share of demo labels flipped, so no method reaches 100%")


def _hub_splits() -> dict[Literal["train", "validation", "test"], str]:
    # a def, not a lambda: mypy infers a lambda's dict as dict[str, str], not the Literal keys
    return {"train": "train", "validation": "validation", "test": "test"}


class DataConfig(Strict):
    """Where the data comes from, how it is read and how it is split."""

    source: str | dict[Literal["train", "validation", "test"], Path] = Field(BUILTIN_DEMO, description=(
        "\"builtin:demo\"; a CSV/TSV/JSONL/Parquet path (or CoNLL for token_classification); {train: path, "
        "validation: path, test: path}; or \"hub:<dataset name>\" for users with a network. The columns read are "
        "the task's (task.text_column, task.label_column, ...)."))
    quoting: Literal["auto", "csv", "none"] = Field("auto", description=(
        "how CSV/TSV files quote: \"csv\", fields in double quotes with inner quotes doubled (Python's csv, "
        "pandas, spreadsheets); \"none\", a quote is an ordinary character (GLUE-style raw TSV); \"auto\", csv "
        "when some field starts with a quote and the whole file parses that way, else none"))
    hub_config: str | None = Field(None, description="the configuration of a hub:<name> dataset (e.g. sst2 of glue)")
    hub_splits: dict[Literal["train", "validation", "test"], str] = Field(
        default_factory=_hub_splits, description="which split of a hub:<name> dataset is ftlab's train, validation and test")
    validation_size: float = Field(0.1, gt=0.0, lt=0.5, description="share of a single source file held out for validation (stratified)")
    test_size: float = Field(0.2, gt=0.0, lt=0.5, description="share of a single source file held out for the test (stratified)")
    max_train_samples: PositiveInt | None = Field(None, description="subsample the train split to this many rows (stratified where the task has classes); null: all")
    max_validation_samples: PositiveInt | None = Field(None, description="subsample the validation split to this many rows; null: all")
    max_test_samples: PositiveInt | None = Field(None, description="subsample the test split to this many rows; null: all")
    demo: DemoConfig = DemoConfig()
    prepared_dir: Path = Field(Path("data/prepared"), description="where prepare writes the splits (Parquet) and labels.json")
    batches_dir: Path = Field(Path("data/batches"), description="`ftlab ingest FILE` keeps batches of new rows here; the labelled ones join training (docs: the loop)")

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


class Cell(NamedTuple):
    """One training run of a comparison: a method at one seed and one training-set size."""

    method: str
    seed: int
    train_size: int | Literal["all"]

    @property
    def name(self) -> str:  # the run directory under <train.output_dir>/<method>/
        return f"s{self.seed}-n{self.train_size}"


class ModelConfig(Strict):
    """The pretrained model every method starts from, and its head."""

    name: str = Field(BUILTIN_MODEL, description="a hub name, a local path, or the embedded builtin:all-MiniLM-L6-v2")
    pooling: Literal["mean", "cls"] = Field("mean", description=(
        "\"mean\": mean of the last hidden states over real tokens (how all-MiniLM-L6-v2 was trained); \"cls\": "
        "the model's own sequence-classification head ([CLS] pooler for BERT)."))
    max_length: int = Field(128, ge=8, le=8192, description="tokens per text (per pair); longer texts are truncated with a warning")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout before the head")
    encoder_dropout: float | None = Field(None, ge=0.0, lt=1.0, description=(
        "dropout inside the pretrained network (hidden states and attention); null: the checkpoint's own (0.1 for"
        " MiniLM). 0 skips the random masks, a sixth of a CPU step: 1.17x in paired epochs of "
        "benchmarks/compile.py, 1.0-1.1x in whole runs (throughput_no_dropout.json), at the same SST-2 accuracy; "
        "it changes the regularisation, so it is no default"))
    trust_remote_code: bool = Field(False, description="run the model repository's own code (off unless set)")


class TrainConfig(Strict):
    """How every cell trains: steps, batches, evaluation, precision, where runs go."""

    epochs: float = Field(3.0, gt=0, description="passes over the training split (method_params.<m>.epochs overrides it)")
    max_steps: int = Field(-1, ge=-1, description="-1: run `epochs`; otherwise stop after this many steps")
    min_steps: int = Field(0, ge=0, description=(
        "at least this many optimizer steps, however few examples: without it a 100-example run of a data-size "
        "sweep gets 10 steps and measures the step budget, not the method; 0 disables"))
    batch_size: PositiveInt = Field(32, description="the global training batch (under DDP each of N processes takes batch_size / N)")
    eval_batch_size: PositiveInt = Field(128, description="batch size of evaluation and prediction")
    eval_steps: PositiveInt = Field(50, description="evaluate (and checkpoint) every this many optimizer steps")
    logging_steps: PositiveInt = Field(10, description="log the training loss every this many steps")
    weight_decay: float = Field(0.01, ge=0.0, description="AdamW's weight decay")
    warmup_ratio: float = Field(0.06, ge=0.0, lt=1.0, description="share of the steps the learning rate warms up over, then decays linearly")
    early_stopping_patience: int = Field(4, ge=0, description="evaluations without improvement; 0 disables")
    metric_for_best: str | None = Field(None, description=(
        "validation metric for early stopping and the best weights: one of the task's metrics or \"loss\"; null: "
        "the task's primary metric (accuracy, spearman, micro_f1, f1), in its own direction"))
    train_eval_samples: int = Field(512, ge=1, description="train subset scored at each eval: gap and drift")
    threads: PositiveInt | None = Field(None, description="torch threads; None: all cores")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description=(
        "bf16 autocast (fp32 weights, bf16 matmuls) or plain fp32. auto: bf16 where the hardware does it natively"
        " (a bf16 GPU; a CPU with AVX512-BF16 or AMX, where a MiniLM step ran 1.9x faster), else fp32"))
    compile: Literal["auto", "on", "off"] = Field("auto", description=(
        "torch.compile (inductor) of the model's training and evaluation steps. auto: off, because no measurement"
        " has shown it to pay yet: on a 2-core fp32 CPU a compiled MiniLM step ran no faster than eager and its "
        "first step took minutes (benchmarks/results/compile.json); on: compile, with batches padded to length "
        "buckets (pad_to_multiple_of, 16 if null) so graphs are reused"))
    pad_to_multiple_of: PositiveInt | None = Field(None, description="pad every batch to a multiple of this many tokens; null: to its longest row (16 when compiled)")
    output_dir: Path = Field(Path("runs"), description="run directories: <output_dir>/<method>/s<seed>-n<size>/")
    checkpoint_dir: Path | None = Field(Path(".checkpoints"), description=(
        "checkpoints of unfinished runs (every eval_steps), resumed by the next run with the same config and "
        "removed when the run finishes; null disables checkpointing"))


class ValidationConfig(Strict):
    """Thresholds of the Great Expectations suite run on the prepared splits."""

    min_text_chars: int = Field(1, ge=1, description="shortest text allowed, in characters")
    max_text_chars: int = Field(5000, ge=1, description="longest text allowed, in characters")
    min_examples_per_class: int = Field(5, ge=1, description="in every split")
    max_class_ratio: float = Field(10.0, ge=1.0, description="largest / smallest class in train")
    max_duplicate_fraction: float = Field(0.01, ge=0.0, le=1.0, description="repeated texts within a split")
    max_leaked_rows: int = Field(0, ge=0, description="validation/test texts also in train; test texts also in validation")
    max_numeric_text_fraction: float = Field(0.1, ge=0.0, le=1.0, description="texts that are plain numbers (a wrong column?)")
    max_quote_wrapped_fraction: float = Field(0.05, ge=0.0, le=1.0, description=(
        "texts wrapped whole in double quotes, like a CSV field read without its quoting; any text with doubled "
        "quotes inside such a wrapping (\"he said \"\"hi\"\"\") fails on its own"))


class ChecksConfig(Strict):
    """Overfitting and drift verdicts per method."""

    warn_gap: float = Field(0.05, ge=0.0, le=1.0, description="train − validation primary metric that warns")
    overfit_gap: float = Field(0.10, ge=0.0, le=1.0, description="train − validation primary metric that counts as overfitting")
    rising_evals: int = Field(3, ge=1, description="val loss up while train loss down, k evals in a row")
    fail_on: Literal["never", "warn", "overfit"] = Field("never", description="verdict that fails the pipeline")
    drift: bool = Field(True, description=(
        "the Evidently drift report of each cell (train subset vs test: text length, word count, OOV rate, label and "
        "prediction shares); false: the overfitting verdict only, which saves importing Evidently (about 6 s a "
        "process) and its report (seconds a cell) in quick sweeps"))


class ReportConfig(Strict):
    """What the comparison report recommends within."""

    memory_budget_mb: float | None = Field(None, gt=0, description="recommend only methods whose peak memory fits this (MB); null: no limit")
    time_budget_s: float | None = Field(None, gt=0, description="recommend only methods whose train time fits this (s); null: no limit")
    tolerance: float = Field(0.01, ge=0.0, le=1.0, description=(
        "the non-inferiority margin: a cheaper method replaces the best only when the whole interval of its "
        "difference to the best lies above -tolerance (in the primary metric's units)"))
    time_noise: float = Field(0.25, ge=0.0, lt=1.0, description="a train-time saving below this share of the best's time is noise, never a reason to pick a method (one seed's train time moved by up to 32% between seeds in the SST-2 sweep, and by 14% between two runs of the same work on a loaded machine)")
    confidence: float = Field(0.95, gt=0.5, lt=1.0, description="of the intervals and the paired tests")
    dir: Path = Field(Path("reports"), description="validation, checks and the comparison are written here")


class PipelineConfig(Strict):
    """How the Prefect flow runs the stages (dvc repro runs them one at a time)."""

    max_parallel: PositiveInt = Field(1, description="cells trained at once (on a GPU machine: at most one per GPU)")
    retries: int = Field(1, ge=0, description="per task, for transient failures")
    retry_delay_s: float = Field(5.0, ge=0.0, description="seconds before a failed task is retried")
    task_runner: Literal["threads", "dask", "ray"] = Field("threads", description=(
        "where tasks run: \"threads\" of the flow's process; \"dask\", the worker processes of a Dask cluster (a "
        "local one of max_parallel one-thread workers, or the one at dask_address); \"ray\", a Ray cluster (pip "
        "install \"ftlab[ray]\"). Dask and Ray need a Prefect server: PREFECT_API_URL."))
    dask_address: str | None = Field(None, description="scheduler of a running cluster, e.g. tcp://10.0.0.5:8786")
    ray_address: str | None = Field(None, description="head of a running cluster, e.g. ray://10.0.0.5:10001; None: local")


class SearchConfig(Strict):
    """A per-method hyperparameter search on the validation split, so methods meet at their own best."""

    enabled: bool = Field(False, description="search each method's grid; false: every method trains at its defaults")
    trials: PositiveInt = Field(4, description=(
        "per method; the defaults are always one. A grid (lr factors × the method's knobs) that fits is tried whole"))
    lr_factors: list[float] = Field(default_factory=lambda: [0.3, 1.0, 3.0], description=(
        "times the method's lr: the grid's learning rates, or the ends of the log-uniform range TPE draws from"))
    train_size: TrainSize = Field("all", description="examples the trials train on (seed: the first of `seeds`)")
    prune: bool = Field(True, description="stop trials early by successive halving over training steps")
    first_rung: PositiveInt | None = Field(None, description=(
        "steps at which trials are first compared (the evaluation at or after it); null: train.eval_steps"))
    eta: int = Field(3, ge=2, description=(
        "at each rung a trial goes on only among the best 1/eta of the trials that reached it; the next rung is "
        "eta times as many steps"))

    @field_validator("lr_factors")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if not v or any(f <= 0 for f in v):
            raise ValueError("must list positive factors")
        return v


class RaceConfig(Strict):
    """A race between methods (docs: comparisons): every method's cells train to the first rung, and a
    method that the validation split shows worse than the leader, or outside the best 1/eta, stops there."""

    enabled: bool = Field(False, description=(
        "race the methods; false: every cell trains its whole step budget"))
    rungs: list[float] = Field(default_factory=lambda: [0.15], description=(
        "shares of each cell's step budget where methods are compared (the evaluation at or after each), "
        "increasing, each in (0, 1)"))
    eta: int = Field(2, ge=1, description=(
        "successive halving's cap: at each rung at most ceil(n/eta) of the n methods that reached it go on; "
        "1: no cap, only a method shown inferior stops"))

    @field_validator("rungs")
    @classmethod
    def _shares(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < r < 1 for r in v):
            raise ValueError("must list shares of the step budget, each above 0 and below 1")
        if any(b <= a for a, b in itertools.pairwise(v)):
            raise ValueError(f"must increase: {v}")
        return v


class CiConfig(Strict):
    """The quality gate of CI retraining (``ftlab ci``)."""

    max_metric_drop: float = Field(0.02, ge=0.0, description=(
        "fail when the recommended method's primary test metric is worse than the base branch's by more than this"
        " (in the metric's own units and direction)"))
    fail_on_refused: bool = Field(True, description="fail when promote's champion/challenger gate refused the new pick (reports/promotion.json)")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "max_accuracy_drop" in data:
            if "max_metric_drop" in data:
                raise ValueError("max_accuracy_drop was renamed max_metric_drop; give only max_metric_drop")
            log.warning("ci.max_accuracy_drop is now ci.max_metric_drop (a drop in the task's primary metric)")
            data = {**{k: v for k, v in data.items() if k != "max_accuracy_drop"}, "max_metric_drop": data["max_accuracy_drop"]}
        return data


class PromoteConfig(Strict):
    """Where ``ftlab promote`` packages the recommended cell as a standalone model."""

    name: str = Field("ftlab-model", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="also dvc.yaml's artifact name")
    dir: Path = Field(Path("models"), description="promoted models go to <dir>/<name>/, their history to <dir>/history/<name>/")
    gate: Literal["better", "not_worse", "always"] = Field("not_worse", description=(
        "champion / challenger (docs: the loop): a new pick replaces the serving model when it is not "
        "significantly worse (not_worse), only when significantly better (better), or always"))
    tolerance: float = Field(0.0, ge=0.0, description="a loss (not_worse) or gain (better) of the primary metric that does not count")


class MonitorConfig(Strict):
    """``ftlab monitor``: new data against the promoted model's training reference (docs: the loop, monitor)."""

    input: Path = Field(Path("data/incoming"), description="the file, or directory of files, the scheduled monitor reads")
    out_dir: Path = Field(Path("reports/monitor"), description="where monitor.html, monitor.json and the labelling queue are written")
    numeric_threshold: float = Field(0.2, gt=0.0, description=(
        "text descriptors and confidence: normed Wasserstein distance (in reference standard deviations); 0.2, "
        "not Evidently's 0.1: two samples of 200 demo texts already differed by 0.115"))
    category_threshold: float = Field(0.1, gt=0.0, le=1.0, description="predicted-class shares: Jensen-Shannon distance above this")
    embedding_threshold: float = Field(0.6, gt=0.5, le=1.0, description="sentence embeddings: ROC AUC of a classifier telling new rows from reference rows above this")
    max_accuracy_drop: float = Field(0.05, ge=0.0, le=1.0, description="with labels in the input: accuracy more than this below the reference's")
    min_drifted: PositiveInt = Field(1, description="signals that must drift for the verdict \"drift\"")
    min_rows: PositiveInt = Field(30, description="fewer new rows than this: refuse to judge")
    max_rows: PositiveInt = Field(10_000, description=(
        "more new rows than this: a uniform random sample of this many is judged, so memory stays bounded "
        "(a 1 GB file read whole took 8 GB and more); 10,000 rows measure a 5-point accuracy drop to about ±1 point"))
    queue_size: int = Field(100, ge=0, description="unlabelled new rows: how many to queue for labelling (0: none)")
