"""The race stage: methods compared at budget rungs on validation, the clearly worse stopped early.

Per train size, for each rung of ``race.rungs``: every cell (method × seed) still in the race
trains to that share of its step budget (:mod:`ftlab.training.race`), and the rule of
:mod:`ftlab.analysis.race` eliminates methods. Survivors go on at the next rung; after the last, the
train stage takes them to their budget from the race's checkpoint, and takes an eliminated cell no
further than where it stopped. Writes ``<report.dir>/race/decisions.json`` (per rung: steps, share,
leader, each method's validation score, difference, interval, p and decision, and the identities of
the cells it was decided from) and one record per cell, ``<report.dir>/race/<method>/s<seed>-n<size>.json``
(status, rung, stop step), which is the dep its dvc.yaml train stage adds. A record holds only what
its cell's training depends on: with the other cells' identities in it, an edit of another method's
params would retrain this cell under ``dvc repro`` although its stop step stayed and the flow (which
compares the stop step) would not. With ``race.enabled`` false every record says so and nothing trains.

The stage is skipped when its decisions were made from the current cell identities and race
settings (``inputs`` in decisions.json); rerun after an unrelated edit, it decides again from the
validation scores kept per identity, training nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from ftlab.core.config import Cell
from ftlab.core.io import atomic_dir, write_json
from ftlab.core.layout import race_decisions, race_file
from ftlab.learning.config import Config
from ftlab.training.identity import cell_identity, cell_key

log = logging.getLogger(__name__)


def _inputs(cfg: Config, keys: dict[Cell, str]) -> str:
    """What the decisions follow from: the race and report settings and every cell's identity."""
    settings = {"race": cfg.race.model_dump(mode="json"), "tolerance": cfg.report.tolerance,
                "confidence": cfg.report.confidence, "cells": sorted(f"{c.method}/{c.name}/{k}" for c, k in keys.items())}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def run(cfg: Config, configs: dict[str, Config]) -> dict:
    """Race every train size of ``cfg``'s grid; ``configs``: each method's config with its searched
    params applied (what its cells train with). Returns the decisions as written."""
    cells = cfg.cells()
    if not cfg.race.enabled:
        return _write(cfg, {"enabled": False}, {c: {"enabled": False} for c in cells})
    keys = {c: cell_key(cell_identity(configs[c.method], c)) for c in cells}
    inputs = _inputs(cfg, keys)
    path = race_decisions(cfg)
    if path.is_file() and all(race_file(cfg, c).is_file() for c in cells):
        earlier = json.loads(path.read_text())
        if earlier.get("inputs") == inputs:
            log.info("race: decided from these cells and settings already (%s), skipping", path)
            return earlier
    records: dict[Cell, dict] = {}
    sizes = [_race_size(cfg, configs, [c for c in cells if c.train_size == size], keys, records)
             for size in dict.fromkeys(c.train_size for c in cells)]
    task = cfg.task_type()
    decisions = {"enabled": True, "inputs": inputs, "rungs": cfg.race.rungs, "eta": cfg.race.eta,
                 "tolerance": cfg.report.tolerance, "confidence": cfg.report.confidence, "split": "validation",
                 "metric": task.statistic.metric, "sizes": sizes}
    return _write(cfg, decisions, records)


def _race_size(cfg: Config, configs: dict[str, Config], cells: list[Cell], keys: dict[Cell, str],
               records: dict[Cell, dict]) -> dict:
    """The race among the methods at one train size; fills ``records`` for its cells."""
    import numpy as np  # training's and the rule's imports (torch, scipy): a disabled race needs neither

    from ftlab.analysis.race import decide
    from ftlab.training.race import rung_result

    task = cfg.task_type()
    methods, seeds = list(dict.fromkeys(c.method for c in cells)), list(dict.fromkeys(c.seed for c in cells))
    size = cells[0].train_size
    alive, spent, last, rungs = list(methods), {c: 0.0 for c in cells}, {}, []
    for number, share in enumerate(cfg.race.rungs, start=1):
        if len(alive) < 2:
            break
        results = {c: rung_result(configs[c.method], c, share, spent[c]) for c in cells if c.method in alive}
        for c, r in results.items():
            spent[c], last[c] = r["seconds"], (number, share, r)
        rule = decide({m: np.stack([results[Cell(m, s, size)]["scores"] for s in seeds]) for m in alive},
                      task.statistic, task.primary.higher_is_better, cfg.report.tolerance, cfg.report.confidence,
                      cfg.race.eta)
        for row in rule["methods"]:
            row["stop_steps"] = [results[Cell(row["method"], s, size)]["step"] for s in seeds]
            row["budget_steps"] = [results[Cell(row["method"], s, size)]["budget"] for s in seeds]
            if row["decision"] == "eliminated":
                for s in seeds:
                    c = Cell(row["method"], s, size)
                    records[c] = _record(c, keys[c], "eliminated", number, share, results[c])
        alive = [r["method"] for r in rule["methods"] if r["decision"] != "eliminated"]
        rungs.append({"rung": number, "share": share, **rule})
        log.info("race, train size %s, rung %d (%g of the budget): %s leads; eliminated: %s", size, number, share,
                 rule["leader"], ", ".join(r["method"] for r in rule["methods"] if r["decision"] == "eliminated") or "none")
    for c in cells:
        if c.method in alive:
            number, share, r = last.get(c, (0, 0.0, {"step": None, "budget": None, "seconds": 0.0}))
            records[c] = _record(c, keys[c], "survivor", number, share, {**r, "step": r["budget"]})
    decided_from = {f"{c.method}/{c.name}": keys[c] for c in cells}
    return {"train_size": size, "seeds": seeds, "methods": methods, "survivors": alive, "rungs": rungs,
            "decided_from": decided_from}


def _record(cell: Cell, key: str, status: str, rung: int, share: float, result: dict[str, Any]) -> dict:
    """A cell's race record: all its train stage needs (``stop_step``: where training ends; the
    budget for a survivor) and the seconds the race trained it."""
    return {"enabled": True, "method": cell.method, "seed": cell.seed, "train_size": cell.train_size,
            "identity": key, "status": status, "rung": rung, "share": share, "stop_step": result["step"],
            "budget_steps": result["budget"], "train_seconds": result["seconds"]}


def _write(cfg: Config, decisions: dict, records: dict[Cell, dict]) -> dict:
    """decisions.json and every cell's record, the directory replaced whole; unchanged records are
    rewritten byte for byte, which leaves their train stages up to date."""
    root = cfg.report.dir / "race"
    with atomic_dir(root) as tmp:
        write_json(tmp / race_decisions(cfg).relative_to(root), decisions)
        for c, record in records.items():
            write_json(tmp / race_file(cfg, c).relative_to(root), record)
    return decisions
