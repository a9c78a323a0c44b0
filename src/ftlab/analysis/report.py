"""Compare fine-tuning runs and recommend one, using measured numbers and their uncertainty only.

Claims like "LoRA matches full fine-tuning with 0.1% of the parameters" are folklore until someone
measures them on your data, model and hardware, with enough repeats to tell a difference from
noise. This stage reads the run directories of every cell (method × seed × train size) that
:func:`ftlab.training.train.train` wrote, plus the overfitting verdicts, and writes ``comparison.json`` for
programs, ``comparison.md`` for the repository, a self-contained ``comparison.html`` and four plots.

Per method and train size: mean ± std over seeds and a Student t interval (:mod:`ftlab.analysis.stats`).
Per train size: a paired bootstrap test (same seeds, same test examples) of the best method
against each other method. Where curves of two methods cross between two sizes is listed.

Every number is the task's primary metric (accuracy, Spearman, micro-F1, entity F1; ``metrics.json``
names it) in its own direction, and so is every paired test: each resample of the test examples
recomputes that metric for both sides (:class:`ftlab.learning.tasks.base.Statistic`), so a verdict can neither
test another metric than the table shows nor disagree in sign with the difference it reports.

The recommendation rules are :mod:`ftlab.analysis.recommend`'s.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ftlab.analysis import checks, noninferiority, race, slices
from ftlab.analysis.recommend import best_row, pareto, recommend
from ftlab.analysis.render import html, markdown, plots
from ftlab.analysis.rundir import Run
from ftlab.analysis.stats import mean_ci, paired_bootstrap
from ftlab.core.config import ReportConfig
from ftlab.core.io import write_json, write_text
from ftlab.core.record import COST_KEYS
from ftlab.learning.config import default_task
from ftlab.learning.tasks import Task

RUN_KEYS = ("method", "seed", "train_size", "n_train", "trainable_params", "total_params", "trainable_percent")
VERDICTS = (None, *checks.VERDICTS)  # unchecked, then mildest first: a method's verdict is its worst seed's
def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _load(run_dirs: list[Path], checks_dirs: list[Path | None], task: Task) -> list[dict]:
    """Read and validate every cell. Raises ValueError naming the directory, before anything is written."""
    if not run_dirs:
        raise ValueError("compare needs at least one run directory")
    if len(checks_dirs) != len(run_dirs):
        raise ValueError(f"got {len(run_dirs)} run directories but {len(checks_dirs)} checks directories")
    runs, texts = [], None
    sign = 1.0 if task.primary.higher_is_better else -1.0
    seen: dict[tuple, Path] = {}
    for run_dir, checks_dir in zip(map(Path, run_dirs), checks_dirs, strict=True):
        run = Run(run_dir)
        record = run.record
        if record.task != task.name:
            raise ValueError(f"{run_dir} is a {record.task!r} run; this comparison is of task {task.name!r}")
        missing = [m.name for m in task.metrics if m.name not in record.quality]
        if missing:
            raise ValueError(f"{run_dir / 'metrics.json'} lacks {missing}")
        key = (record.method, record.seed, record.train_size)
        if key in seen:
            raise ValueError(f"method {key[0]!r} at seed {key[1]}, train size {key[2]} appears twice: "
                             f"{seen[key]} and {run_dir}")
        seen[key] = run_dir
        predictions = run.predictions()
        if texts is None:
            texts = predictions["text"].to_numpy()
        elif not np.array_equal(texts, predictions["text"].to_numpy()):
            raise ValueError(f"{run_dir} was tested on other examples than {run_dirs[0]}: paired tests need one test set")
        checks: dict[str, Any] = {"verdict": None, "reasons": []}  # not checked: the report says so
        if checks_dir is not None and (Path(checks_dir) / "checks.json").is_file():
            checks = _read_json(Path(checks_dir) / "checks.json")
        primary = record.quality[task.primary.name]
        runs.append({**{k: getattr(record, k) for k in RUN_KEYS}, **record.costs(),
                     "overfitting": checks["verdict"], "overfitting_reasons": checks.get("reasons", []),
                     "history": run.history,
                     "metrics": {m.name: record.quality[m.name] for m in task.metrics},
                     "memory_kind": record.cost.memory_kind,
                     "primary": primary, "score": sign * primary,
                     "scores": task.example_scores(predictions, run.labels),
                     "slices": slices.run_slices(predictions, run.labels, task)})
    return runs


def _summarize(runs: list[dict], level: float) -> dict:
    """One method at one train size, over its seeds: every metric of the task as mean, std and CI."""
    first = runs[0]
    stats = {name: mean_ci([r["metrics"][name] for r in runs], level) for name in first["metrics"]}
    primary = stats[next(iter(stats))]
    verdict = max((r["overfitting"] for r in runs), key=VERDICTS.index)
    return {
        "method": first["method"], "train_size": first["train_size"],
        "n_train": round(float(np.mean([r["n_train"] for r in runs]))), "seeds": sorted(r["seed"] for r in runs),
        "primary": primary["mean"], "primary_std": primary["std"], "primary_ci": [primary["ci_low"], primary["ci_high"]],
        "score": float(np.mean([r["score"] for r in runs])),
        **{name: st["mean"] for name, st in stats.items()},
        **{f"{name}_std": st["std"] for name, st in stats.items()},
        **{f"{name}_ci": [st["ci_low"], st["ci_high"]] for name, st in stats.items()},
        **{k: first[k] for k in ("trainable_params", "total_params", "trainable_percent")},
        **{k: float(np.mean([r[k] for r in runs])) for k in COST_KEYS},
        "train_seconds_std": float(np.std([r["train_seconds"] for r in runs], ddof=1)) if len(runs) > 1 else None,
        "overfitting": verdict,
        "overfitting_reasons": sorted({reason for r in runs for reason in r["overfitting_reasons"]}),
        **({"slices": by_slice} if (by_slice := slices.summarize(runs, level)) else {}),
    }


def _paired(a: np.ndarray, b: np.ndarray, level: float, task: Task) -> dict:
    """The paired bootstrap of A against B on the task's primary metric, which the result names."""
    test = paired_bootstrap(a, b, level, statistic=task.statistic, higher_is_better=task.primary.higher_is_better)
    return {"metric": task.statistic.metric, **test}


def _test_against_best(rows: list[dict], runs: dict[str, list[dict]], level: float, task: Task) -> dict:
    """Set ``vs_best`` on every row: a paired bootstrap of it against the best, on their common seeds."""
    best = best_row(rows)
    best_by_seed = {r["seed"]: r["scores"] for r in runs[best["method"]]}
    for row in rows:
        if row is best:
            row["vs_best"] = None
            continue
        own = {r["seed"]: r["scores"] for r in runs[row["method"]]}
        common = sorted(own.keys() & best_by_seed.keys())
        row["vs_best"] = _paired(np.stack([own[s] for s in common]), np.stack([best_by_seed[s] for s in common]),
                                 level, task) if common else None
    return best


def _crossings(sizes: list[dict]) -> list[dict]:
    """Pairs of methods whose order by the mean primary metric flips between two consecutive train sizes."""
    out = []
    for before, after in itertools.pairwise(sizes):
        acc_before = {r["method"]: r["score"] for r in before["rows"]}
        acc_after = {r["method"]: r["score"] for r in after["rows"]}
        for a, b in itertools.combinations(sorted(acc_before.keys() & acc_after.keys()), 2):
            if (acc_before[a] - acc_before[b]) * (acc_after[a] - acc_after[b]) < 0:
                leader, overtaker = (a, b) if acc_before[a] > acc_before[b] else (b, a)
                out.append({"overtaker": overtaker, "overtaken": leader,
                            "between": [before["n_train"], after["n_train"]]})
    return out


def _by_size(sizes: list[dict]) -> str:
    """Which method wins at each train size, and where the lead changes hands, in words."""
    parts = []
    for s in sizes:
        tied = [r["method"] for r in s["rows"] if r is not s["best"] and r["vs_best"]
                and r["vs_best"]["verdict"] != "worse"]
        parts.append(f"at {s['n_train']} examples {s['best']['method']} ({s['best']['primary']:.3f})"
                     + (f", not significantly better than {', '.join(tied)}" if tied else ", significantly better than the rest"))
    text = "Best by train size: " + "; ".join(parts) + "."
    for before, after in itertools.pairwise(sizes):
        if before["best"]["method"] != after["best"]["method"]:
            text += (f" The lead passes from {before['best']['method']} to {after['best']['method']} "
                     f"between {before['n_train']} and {after['n_train']} examples.")
    return text


def _search(paths: list[Path]) -> dict[str, dict]:
    return {s["method"]: s for s in map(_read_json, paths) if s.get("enabled")}


def _against_baselines(baselines: list[dict], best: dict, runs: list[dict], level: float, task: Task) -> list[dict]:
    """Each baseline's value and a paired bootstrap of the best method (its seeds) against it."""
    own = np.stack([r["scores"] for r in runs if r["method"] == best["method"] and r["train_size"] == best["train_size"]])
    return [{"name": b["name"], "value": b["value"],
             "best_vs_baseline": _paired(own, np.broadcast_to(b["scores"], own.shape), level, task)}
            for b in baselines]


def compare(run_dirs: list[Path], checks_dirs: list[Path | None], cfg: ReportConfig, out_dir: Path,
            search_files: Sequence[Path] = (), task: Task | None = None, baselines: Sequence[dict] = (),
            eliminated: list[dict] | None = None) -> dict:
    """Compare cells and write comparison.{json,md,html} and the plots into ``out_dir``. Returns the comparison.

    ``baselines``: ``{"name", "value", "scores"}`` per baseline (see :mod:`ftlab.analysis.baselines`), scored on
    the same test examples. ``task`` defaults to the default task (classification). ``eliminated``: the rows of
    the methods a race eliminated (:func:`ftlab.analysis.race.eliminated_rows`), whose cells are not among
    ``run_dirs``: the report's Eliminated table."""
    task = task or default_task()
    runs = _load(run_dirs, checks_dirs, task)
    groups: dict[Any, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        groups[run["train_size"]][run["method"]].append(run)
    sizes = _sizes(groups, cfg.confidence, task)
    main = sizes[-1]
    rows = main["rows"]
    front_params, front_time = pareto(rows, "trainable_params"), pareto(rows, "train_seconds")
    for r in rows:
        r["pareto"], r["pareto_time"] = r["method"] in front_params, r["method"] in front_time
    result = {
        "task": task.name,
        "primary_metric": {"name": task.primary.name, "label": task.primary.label,
                           "higher_is_better": task.primary.higher_is_better,
                           "statistic": task.statistic.label, "points": task.statistic.points},
        "metrics": [{"name": m.name, "label": m.label, "higher_is_better": m.higher_is_better} for m in task.metrics],
        "methods": rows,
        "recommendation": recommend(rows, cfg, task.primary.label, task.primary.higher_is_better),
        "baselines": _against_baselines(list(baselines), main["best"], runs, cfg.confidence, task),
        "confidence": cfg.confidence,
        "seeds": sorted({r["seed"] for r in runs}),
        "train_sizes": [s["train_size"] for s in sizes],
        "by_size": [{"train_size": s["train_size"], "n_train": s["n_train"], "best": s["best"]["method"],
                     "tests": {r["method"]: r["vs_best"] for r in s["rows"] if r is not s["best"]}} for s in sizes],
        "by_size_text": _by_size(sizes),
        "crossings": _crossings(sizes),
        "summary": [{"method": r["method"], "train_size": s["train_size"], "n_train": r["n_train"],
                     "mean": r["primary"], "std": r["primary_std"], "ci_low": r["primary_ci"][0],
                     "ci_high": r["primary_ci"][1], "n": len(r["seeds"]),
                     **{m.name: r[m.name] for m in task.metrics}, "train_seconds": r["train_seconds"]}
                    for s in sizes for r in s["rows"]],
        "cells": [{**{k: run[k] for k in (*RUN_KEYS, "train_seconds", "overfitting", "memory_kind")},
                   **run["metrics"]} for run in runs],
        "search": _search(list(search_files)),
        "eliminated": eliminated or [],
    }
    _write(Path(out_dir), result, plots(rows, groups[main["train_size"]], sizes, task.primary))
    return result


def _sizes(groups: dict[Any, dict[str, list[dict]]], level: float, task: Task) -> list[dict]:
    """Per train size, fewest examples first: each method's summary row, best first, and the best
    method tested against each other one."""
    sizes = []
    for size, by_method in groups.items():
        rows = [_summarize(method_runs, level) for method_runs in by_method.values()]
        best = _test_against_best(rows, by_method, level, task)
        sizes.append({"train_size": size, "n_train": best["n_train"], "best": best,
                      "rows": sorted(rows, key=lambda r: -r["score"])})
    return sorted(sizes, key=lambda s: s["n_train"])


def _write(out_dir: Path, result: dict, pngs: dict[str, bytes]) -> None:
    """comparison.{json,md,html} and the plots, each file replaced whole."""
    text = (markdown(result) + noninferiority.markdown(result)
            + race.markdown(result["eliminated"], result["primary_metric"]["points"], result["confidence"])
            + slices.markdown(result))
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, data in pngs.items():
        tmp = out_dir / f".{name}.tmp-{os.getpid()}"
        tmp.write_bytes(data)
        os.replace(tmp, out_dir / name)
    write_json(out_dir / "comparison.json", result)
    write_text(out_dir / "comparison.md", text)
    write_text(out_dir / "comparison.html", html(text, pngs))
