"""One typed record of a finished run, read and written here only.

A run directory's ``metrics.json`` holds the task's quality metrics at the top level (named by the
task: accuracy, spearman, f1, ...; ``dvc metrics show`` lists them), what trained, the best step and
the measured cost as a section of its own. ``RunRecord`` is that file as a type: the quality metrics
are ``quality``, the cost is ``cost`` (a ``Cost``), so NER's entity ``precision`` and the numeric
``cost.precision`` it ran in never meet. ``ftlab.analysis.rundir.Run`` reads the rest of a run
directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ftlab.core.io import write_json

# the comparison's per-run cost columns: the artifact's size and the cost section's timings and memory
COST_KEYS = ("train_seconds", "train_samples_per_second", "peak_memory_mb", "artifact_bytes",
             "eval_latency_ms_per_sample")


# what a run's record keeps of the race's record of its cell (ftlab.race): where the race stopped it
RACE_KEYS = ("rung", "share", "stop_step", "budget_steps")


class Cost(BaseModel):
    """What a run cost, measured: the only part that differs between two runs of one identity."""

    model_config = ConfigDict(extra="forbid")

    train_seconds: float  # wall time of training, periodic evaluations included
    eval_seconds_in_training: float = 0.0
    train_samples_per_second: float  # evaluations excluded; all processes of a DDP run
    peak_memory_mb: float
    memory_kind: str = "rss"  # "rss" (process, CPU) or "cuda_allocated"
    device: str = "cpu"
    threads: int | None = None
    precision: Literal["bf16", "fp32"] = "fp32"
    compile: bool = False
    pad_to_multiple_of: int | None = None
    processes: int = 1
    eval_latency_ms_per_sample: float


class BestValidation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: str
    value: float


class RunRecord(BaseModel):
    """``metrics.json``: the test metrics, what trained, the best step and the measured cost."""

    model_config = ConfigDict(extra="allow")  # the task's quality metrics, at the top level

    method: str
    task: str
    primary_metric: str
    decision: dict[str, Any] = {}
    trainable_params: int
    total_params: int
    trainable_percent: float
    best_step: int
    best_validation: BestValidation
    steps: int
    epochs: float
    n_train: int
    n_validation: int
    n_test: int
    seed: int
    train_size: int | Literal["all"]
    artifact_bytes: int
    cost: Cost
    # complete: no race; survivor: raced and trained to its budget; eliminated: stopped at race.rung (RACE_KEYS,
    # and trained_from: the step the train stage went on from, the race's checkpoint)
    status: Literal["complete", "survivor", "eliminated"] = "complete"
    race: dict[str, Any] | None = None

    @property
    def quality(self) -> dict[str, Any]:
        """The task's test metrics (numbers, and per-class details where the task has them)."""
        return dict(self.model_extra or {})

    @property
    def primary(self) -> float:
        return float(self.quality[self.primary_metric])

    def table_row(self) -> dict[str, Any]:
        """Every scalar of the record in one flat dict, for tables: the quality metrics, the run's
        fields and the cost's; a cost field named like a quality metric (NER's ``precision``)
        becomes ``cost_<name>``."""
        quality = {k: v for k, v in self.quality.items() if not isinstance(v, (dict, list))}
        run = {k: v for k, v in self.model_dump(exclude=set(self.quality) | {"cost", "decision", "best_validation", "race"}).items()}
        cost = {(f"cost_{k}" if k in quality else k): v for k, v in self.cost.model_dump().items()}
        return quality | run | cost

    def costs(self) -> dict[str, float]:
        """The comparison's cost columns (COST_KEYS)."""
        return {k: getattr(self, k) if k == "artifact_bytes" else getattr(self.cost, k) for k in COST_KEYS}


def read_record(run_dir: Path) -> RunRecord:
    """A finished run's record; ValueError naming the file when it is missing or not a run record."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise ValueError(f"{run_dir} is not a finished ftlab run (no metrics.json)")
    try:
        return RunRecord.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise ValueError(f"{path} is not an ftlab run record: {problems}") from None


def write_record(run_dir: Path, record: RunRecord) -> None:
    write_json(Path(run_dir) / "metrics.json", record.model_dump(mode="json"))
