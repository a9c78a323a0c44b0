"""The interface every task implements, and the registry that holds them.

A task is the problem being learned, orthogonal to the fine-tuning method (as peft keeps its
``TaskType`` apart from its tuners). It owns everything that depends on the shape of the labels:
the columns it reads, how labels are encoded, tokenisation and the collator, the head and the
loss, the peft task type, the metrics with the primary one and its direction, how outputs are
decoded and written, the per-example columns from which the paired tests recompute the primary
metric on every resample, and its trivial baseline. Everything downstream asks the task instead of assuming single-label classification.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ftlab.learning.tasks.statistics import Statistic

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from torch import nn

    from ftlab.core.config import ModelConfig
    from ftlab.learning.config import Config

TASKS: dict[str, type[Task]] = {}


class DataError(ValueError):
    """Input data that cannot be used; the message names the file, column or rows at fault."""


class TaskOptions(BaseModel):
    """Options every task has: which source columns hold the text and the target."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(description="the task: `ftlab tasks` lists them")
    text_column: str = Field("text", description="the column that holds the text")
    label_column: str = Field("label", description="the column that holds the target (label, score, label list)")


@dataclass(frozen=True)
class Metric:
    """One scalar metric of a task: its key in metrics.json, its direction, how to print it."""

    name: str
    label: str
    higher_is_better: bool = True


class Task:
    """A kind of problem, bound to its options. Subclasses set the class attributes and implement the
    data and output hooks."""

    name: ClassVar[str]
    summary: ClassVar[str]
    Options: ClassVar[type[TaskOptions]] = TaskOptions
    peft_task_type: ClassVar[str] = "SEQ_CLS"
    metrics: ClassVar[tuple[Metric, ...]]  # the first is the primary metric
    statistic: ClassVar[Statistic]
    # methods that cannot work on this task, with the reason (refused at config load)
    unsupported_methods: ClassVar[dict[str, str]] = {}
    calibrated: ClassVar[bool] = False  # True: calibrate() tunes a decision setting on validation
    file_suffixes: ClassVar[tuple[str, ...]] = ()  # file types read_file reads (e.g. CoNLL columns)
    builtin_sources: ClassVar[tuple[str, ...]] = ()  # datasets the task generates: data.source: builtin:<name>
    # True: the model's loss is a sum over label tokens divided by the Trainer's num_items_in_batch
    # (a causal LM's), which under DDP must count the tokens of every process's share of the batch
    loss_over_batch_tokens: ClassVar[bool] = False
    # True: labels are class names, one per row. Prepare cleans them (ftlab.data.labels), stratifies
    # every split on them, numbers them in label order (2 before 10) and streams large files
    class_labels: ClassVar[bool] = False
    # True: the data checks judge train's class balance (data.max_class_ratio); not where one class
    # dominates by design (NER's O tag, the neutral label of emotion data)
    balanced_classes: ClassVar[bool] = False
    demo_data: ClassVar[bool] = False  # True: data.source builtin:demo (labelled sentences) fits the task

    def __init__(self, opts: TaskOptions | None = None):
        self.opts: Any = opts if opts is not None else self.Options(type=self.name)

    @property
    def primary(self) -> Metric:
        return self.metrics[0]

    @property
    def selection_metric(self) -> Metric:
        """What early stopping and the best weights follow unless train.metric_for_best says otherwise."""
        return self.primary

    @property
    def gap_metric(self) -> Metric:
        """The metric whose train − validation gap the overfitting check judges."""
        return self.primary

    def metric(self, name: str) -> Metric:
        """The metric called ``name``; "loss" is every task's, lower is better."""
        if name == "loss":
            return Metric("loss", "loss", higher_is_better=False)
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(f"task {self.name!r} has no metric {name!r}; it has {[m.name for m in self.metrics]} and loss")

    def check(self, cfg: Config) -> None:
        """Raise ValueError for options the rest of ``cfg`` cannot serve (at config load; e.g. a method
        that cannot train a bi-encoded pair). Per-task refusals that hold for any options are
        :attr:`unsupported_methods`."""

    # ---- data -------------------------------------------------------------------------------
    def source_columns(self) -> dict[str, str]:
        """Canonical column name → the source's column name, for every column this task reads."""
        columns = {"text": self.opts.text_column, "label": self.opts.label_column}
        pair = getattr(self.opts, "text_pair_column", None)
        return {**columns, "text_pair": pair} if pair else columns

    def read_file(self, path: Path) -> pd.DataFrame:
        """A file of a task-specific format (one of ``file_suffixes``), in canonical columns."""
        raise NotImplementedError

    def builtin(self, name: str, n: int, seed: int) -> pd.DataFrame:
        """``n`` rows of the task's own dataset ``data.source: builtin:<name>`` (one of
        :attr:`builtin_sources`), in the task's source columns."""
        raise NotImplementedError

    @property
    def target(self) -> str | None:
        """The canonical column of the target, the one column a batch may leave out (``ftlab ingest``
        keeps such a batch for monitoring); None where every row carries its target (chat messages)."""
        return "label"

    def unlabelled(self, df: pd.DataFrame) -> pd.Series:
        """Which rows of a labelled file have no target: a missing value, as ``ftlab ingest`` asks about
        (``--unlabelled-rows``). A task that reads a missing value as a target (no labels) overrides it."""
        import pandas as pd  # the registry stays light (see ftlab.learning.tasks)

        target = self.target
        return df[target].isna() if target in df else pd.Series(False, index=df.index)

    def label_sets(self, df: pd.DataFrame, split: str) -> list[list[str]] | None:
        """Each row's class names, read as :meth:`encode` reads them, for tasks whose rows hold a set or a
        sequence of classes (labels, tags): what ``ftlab ingest`` checks for classes never trained on.
        None for the others (single class labels have their own reading, :mod:`ftlab.data.labels`)."""
        return None

    def check_rows(self, df: pd.DataFrame, split: str) -> None:
        """Raise DataError for rows that cannot be used at all (before splitting)."""
        bad = df["text"].isna() | (df["text"].astype(str).str.strip() == "")
        if bad.any():
            raise DataError(f"{split}: {int(bad.sum())} null or blank text(s), e.g. {where(df, bad)}")
        for column in ("text_pair", "label"):
            if column in df and df[column].isna().any():
                raise DataError(f"{split}: null {column.replace('_', ' ')}(s), e.g. {where(df, df[column].isna())}")

    def stratify(self, df: pd.DataFrame) -> pd.Series | None:
        """The column to stratify splits and subsamples on, or None."""
        return None

    def encode(self, splits: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], list[str]]:
        """Prepared splits (canonical columns, encoded labels) and the label names."""
        raise NotImplementedError

    def validation_targets(self, label: pd.Series) -> tuple[dict[str, Any], pd.Series | None]:
        """The prepared ``label`` column as the row columns the data checks judge (the first is the
        target that must exist), and the class id of every label occurrence for the per-class counts
        (None: the task has no classes)."""
        return {"label": label}, None

    # ---- model ------------------------------------------------------------------------------
    def tokenize(self, df: pd.DataFrame, tokenizer: Any, max_length: int, labels: list[str]) -> Any:
        """A ``datasets.Dataset`` of unpadded token ids and ``labels`` (padding is the collator's)."""
        raise NotImplementedError

    def collator(self, tokenizer: Any, pad_to_multiple_of: int | None = None) -> Any:
        """Batches padded to their longest row, or up to a multiple of ``pad_to_multiple_of``."""
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)

    def build_model(self, cfg: ModelConfig, labels: list[str], train: pd.DataFrame) -> nn.Module:
        """A fresh model with this task's head over the pretrained encoder (seed first)."""
        raise NotImplementedError

    # ---- outputs ----------------------------------------------------------------------------
    def reduce_logits(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """What an evaluation keeps of each batch's logits (``preprocess_logits_for_metrics``)."""
        return logits

    def eval_metrics(self, logits: np.ndarray, label_ids: np.ndarray, labels: list[str]) -> dict[str, float]:
        """The scalar metrics from a Trainer evaluation (``reduce_logits`` output, labels padded with -100)."""
        raise NotImplementedError

    def align(self, dataset: Any, logits: list[np.ndarray]) -> list[np.ndarray]:
        """Per-row model outputs as :meth:`predictions` reads them (token tasks map sub-words to words)."""
        return logits

    def calibrate(self, validation: pd.DataFrame, logits: list[np.ndarray], labels: list[str]) -> dict:
        """Decision settings tuned on the validation split (e.g. a threshold); recorded in metrics.json."""
        return {}

    def test_outputs(self, model: nn.Module, tokenizer: Any, dataset: Any, batch_size: int, bf16: bool) -> list[Any] | None:
        """Per-row outputs this task computes itself (e.g. generated text), for :meth:`predictions`;
        None (the default): the logits of one forward pass, as :meth:`align` maps them."""
        return None

    def predictions(self, df: pd.DataFrame, logits: list[Any], labels: list[str], decision: dict) -> pd.DataFrame:
        """The rows with their target, the prediction and its scores: ``predictions.parquet``."""
        raise NotImplementedError

    def test_metrics(self, predictions: pd.DataFrame, labels: list[str]) -> dict:
        """Every metric of the task (scalars first) from a predictions frame."""
        raise NotImplementedError

    def example_scores(self, predictions: pd.DataFrame, labels: list[str]) -> np.ndarray:
        """(examples, k) per-example columns from which :attr:`statistic` recomputes the primary metric
        on any resample of the examples (e.g. 1/0 for right/wrong; tp, fp, fn; target and prediction)."""
        raise NotImplementedError

    def drift_columns(self, predictions: pd.DataFrame, labels: list[str]) -> tuple[dict[str, Any], list[str]]:
        """Target and prediction columns the drift check compares (name → values), and which of them
        are categorical (the rest are numeric). Default: how many labels each row has and is given."""
        count = predictions["label"].map(len), predictions["prediction"].map(len)
        return {"label_count": count[0].to_numpy(), "prediction_count": count[1].to_numpy()}, []

    def trivial(self, train: pd.DataFrame, test: pd.DataFrame, labels: list[str]) -> tuple[str, pd.DataFrame]:
        """The trivial predictor (majority class, mean score, ...): its name and its predictions on test."""
        raise NotImplementedError

    def extra_baselines(self, model: ModelConfig, train: pd.DataFrame, test: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """Baselines besides the trivial one that the comparison reports (name → predictions on test)."""
        return {}

    def exportable(self) -> bool:
        """Whether ``ftlab promote`` exports the trained model to a standard library's format
        (transformers or sentence-transformers); otherwise it is promoted as ftlab run files."""
        return False

    def pipeline_tag(self) -> str:
        """What the promoted model does, as ``ftlab.json``'s ``task`` and the model card's pipeline tag."""
        return self.name


def where(df: pd.DataFrame, mask: pd.Series) -> str:
    """Up to five offending rows: where they start in their file when known, else their positions."""
    rows = df.loc[mask.to_numpy()]
    if "origin" in rows and rows["origin"].notna().all():
        return ", ".join(rows["origin"].head(5))
    return f"rows {[int(i) for i in np.flatnonzero(mask.to_numpy())[:5]]}"


def label_set_targets(label: pd.Series) -> tuple[dict[str, Any], pd.Series]:
    """Validation targets of rows that hold a list of class ids (a label set, a tag sequence): how
    many each row has, and every id for the per-class counts."""
    return {"label_count": label.map(len)}, label.explode().dropna().astype(int)


def register(cls: type[Task]) -> type[Task]:
    """Class decorator: add ``cls`` to the registry under ``cls.name``. Its paired tests must test its
    primary metric: the one its table, recommendation and CI gate name."""
    if cls.name in TASKS:
        raise ValueError(f"task {cls.name!r} registered twice")
    if cls.statistic.metric != cls.metrics[0].name:
        raise ValueError(f"task {cls.name!r}: its paired tests compute {cls.statistic.metric!r}, "
                         f"not its primary metric {cls.metrics[0].name!r}")
    TASKS[cls.name] = cls
    return cls
