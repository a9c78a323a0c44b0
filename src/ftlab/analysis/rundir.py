"""A finished run directory, read the same way everywhere (each file when first asked for).

It rebuilds the run's task from the options the run recorded in its ``config.yaml``, so it sits
above the task registry, beside the analysis that reads runs.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml

from ftlab.core.record import read_record
from ftlab.learning.config import Config
from ftlab.learning.tasks import Task


class Run:
    """A finished run directory, read the same way everywhere (each file when first asked for)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.record = read_record(self.path)

    def _json(self, name: str) -> Any:
        file = self.path / name
        if not file.is_file():
            raise ValueError(f"run directory {self.path} has no {name}")
        return json.loads(file.read_text(encoding="utf-8"))

    @cached_property
    def history(self) -> list[dict]:
        """One record per evaluation step: train-subset and validation loss and the task's metrics."""
        return self._json("history.json")

    @cached_property
    def labels(self) -> list[str]:
        return self._json("labels.json")

    @cached_property
    def config(self) -> Config:
        """The resolved config the run trained with."""
        return Config.model_validate(yaml.safe_load((self.path / "config.yaml").read_text(encoding="utf-8")))

    @cached_property
    def task(self) -> Task:
        """The run's task, rebuilt from its own recorded options (not from today's params)."""
        return self.config.task_type()

    def predictions(self, split: Literal["test", "train"] = "test") -> pd.DataFrame:
        name = "predictions.parquet" if split == "test" else "train_predictions.parquet"
        if not (self.path / name).is_file():
            raise ValueError(f"run directory {self.path} has no {name}")
        return pd.read_parquet(self.path / name)
