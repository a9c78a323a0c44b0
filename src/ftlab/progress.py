"""Where a pipeline run stands: cells done of all, time since it began, and what remains.

One line in one format under both drivers: each ``train`` stage of ``dvc repro`` prints it after its
cell (the stage logs), and the Prefect flow logs it after each cell and keeps it as a progress
artifact. A run begins when the ``plan`` stage writes the cells' identities; a cell is done when its
run directory records the identity the plan gives it (the rule of ``ftlab.training.identity``), so a cell
that an earlier run trained counts as done, and the estimate is taken from the cells trained since.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ftlab.core.config import Cell
from ftlab.core.layout import plan_file, race_file, run_dir
from ftlab.learning.config import Config
from ftlab.training.identity import with_race


def _read(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def cell_done(cfg: Config, cell: Cell) -> bool:
    """The cell's run directory is finished and records the identity its plan file holds (in a race,
    with where the race's record of the cell stops it)."""
    run = run_dir(cfg, cell)
    planned = _read(plan_file(cfg, cell))
    raced = _read(race_file(cfg, cell)) if cfg.race.enabled else None
    if isinstance(planned, dict) and isinstance(raced, dict) and raced.get("enabled"):
        planned = with_race(planned, raced)
    return planned is not None and (run / "metrics.json").is_file() and _read(run / "identity.json") == planned


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    elapsed: float  # seconds since the plan was written
    remaining: float | None  # estimated seconds; None before a cell of this run has finished

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0

    def line(self) -> str:
        text = f"cells {self.done}/{self.total} done, {_duration(self.elapsed)} elapsed"
        if self.done < self.total:
            text += f", about {_duration(self.remaining)} left" if self.remaining is not None else ", estimate after the first cell"
        return text


def progress(cfg: Config) -> Progress:
    """The run's progress over the config's grid of cells."""
    plan = cfg.report.dir / "plan"
    start = plan.stat().st_mtime if plan.is_dir() else time.time()
    cells = cfg.cells()
    done = [c for c in cells if cell_done(cfg, c)]
    fresh = [c for c in done if (run_dir(cfg, c) / "metrics.json").stat().st_mtime >= start]
    elapsed = max(0.0, time.time() - start)
    remaining = elapsed / len(fresh) * (len(cells) - len(done)) if fresh else None
    return Progress(len(done), len(cells), elapsed, remaining)
