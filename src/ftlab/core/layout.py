"""Where the pipeline writes each cell's outputs: one definition for the stages, promotion and progress.

A leaf over the config sections, so promotion (which reads finished runs) and the stages (which
write them) share these paths without importing each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ftlab.core.config import Cell, ReportConfig, TrainConfig


class Dirs(Protocol):
    """The two sections the paths hang from (any ``Config`` has them)."""

    @property
    def train(self) -> TrainConfig: ...

    @property
    def report(self) -> ReportConfig: ...


def run_dir(cfg: Dirs, cell: Cell) -> Path:
    return cfg.train.output_dir / cell.method / cell.name


def checks_dir(cfg: Dirs, cell: Cell) -> Path:
    return cfg.report.dir / "checks" / cell.method / cell.name


def validation_dir(cfg: Dirs) -> Path:
    return cfg.report.dir / "validation"


def search_file(cfg: Dirs, method: str) -> Path:
    return cfg.report.dir / "search" / f"{method}.json"


def study_file(cfg: Dirs, method: str) -> Path:
    """The Optuna journal of ``method``'s search, beside its result: what a rerun resumes."""
    return cfg.report.dir / "search" / f"{method}.optuna.log"


def plan_file(cfg: Dirs, cell: Cell) -> Path:
    return cfg.report.dir / "plan" / cell.method / f"{cell.name}.json"


def race_file(cfg: Dirs, cell: Cell) -> Path:
    """The race's record of ``cell`` (survivor or eliminated, and its stop step): its train stage's dep."""
    return cfg.report.dir / "race" / cell.method / f"{cell.name}.json"


def race_decisions(cfg: Dirs) -> Path:
    return cfg.report.dir / "race" / "decisions.json"
