"""Pipeline progress (ftlab.progress): cells done of all by the plan's identities, time elapsed
since the plan, and an estimate of what remains, in one line."""

from __future__ import annotations

import json
import os
import shutil

from ftlab import stages
from ftlab.core import layout
from ftlab.progress import Progress, progress
from tests.conftest import write_run_record


def finish(cfg, cell, identity: dict, age: float = 0.0) -> None:
    """A finished run directory of ``cell`` recording ``identity``, its metrics.json ``age`` s old."""
    run = layout.run_dir(cfg, cell)
    run.mkdir(parents=True, exist_ok=True)
    write_run_record(run, method=cell.method)
    (run / "identity.json").write_text(json.dumps(identity))
    if age:
        stamp = (run / "metrics.json").stat().st_mtime - age
        os.utime(run / "metrics.json", (stamp, stamp))


def test_cells_done_are_those_recording_their_planned_identity(make_config):
    cfg = make_config(methods=["full", "lora"], seeds=[1, 2])
    stages.prepare(cfg)
    planned = stages.plan(cfg)
    cells = cfg.cells()
    assert progress(cfg).line().startswith("cells 0/4 done, ") and progress(cfg).line().endswith("estimate after the first cell")
    finish(cfg, cells[0], planned[cells[0]], age=3600)  # trained before this run's plan: done, not in the estimate
    finish(cfg, cells[1], planned[cells[1]])
    finish(cfg, cells[2], {**planned[cells[2]], "data_sha256": "other data"})  # stale: not done
    state = progress(cfg)
    assert (state.done, state.total) == (2, 4) and state.remaining is not None
    assert state.remaining == state.elapsed * 2  # one cell trained in this run took the elapsed time; two remain
    assert ", about " in state.line() and " left" in state.line()
    finish(cfg, cells[2], planned[cells[2]])
    finish(cfg, cells[3], planned[cells[3]])
    assert progress(cfg).line().startswith("cells 4/4 done, ") and "left" not in progress(cfg).line()
    shutil.rmtree(cfg.report.dir / "plan")  # no plan: nothing is done by it
    assert progress(cfg).done == 0


def test_the_line_reads_minutes_and_hours():
    assert Progress(1, 3, 65, 130).line() == "cells 1/3 done, 1m05s elapsed, about 2m10s left"
    assert Progress(3, 3, 7300, 0).line() == "cells 3/3 done, 2h01m elapsed"
