"""Compare fine-tuning runs and recommend one, using measured numbers and their uncertainty only.

Claims like "LoRA matches full fine-tuning with 0.1% of the parameters" are folklore until someone
measures them on your data, model and hardware, with enough repeats to tell a difference from
noise. This stage reads the run directories of every cell (method × seed × train size) that
:func:`ftlab.train.train` wrote, plus the overfitting verdicts, and writes ``comparison.json`` for
programs, ``comparison.md`` for the repository, a self-contained ``comparison.html`` and four plots.

Per method and train size: mean ± std over seeds and a Student t interval (:mod:`ftlab.stats`).
Per train size: a paired bootstrap test (same seeds, same test examples) of the best method
against each other method. Where curves of two methods cross between two sizes is listed.

Recommendation rules, at the largest train size (accuracy is mean test-set accuracy over seeds):

* ``best_accuracy``: the highest accuracy. Ties go to fewer trainable parameters, then less train time.
* ``cheapest_within_tolerance``: among the best and every method that is not significantly worse
  than it (or is, but by at most ``tolerance``), the one with the fewest trainable parameters
  (ties: less train time). A costlier method is preferred only when it is significantly better.
  "Cost" here means trainable parameters, since they set the artifact size and optimizer state;
  train time is reported beside it and never mixed in. Methods whose checks say "overfit" are
  skipped unless every qualifying method overfits.
* ``within_memory_budget`` / ``within_time_budget``: the most accurate method whose
  ``peak_memory_mb`` / ``train_seconds`` is at most the budget. Null when no budget is set;
  ``method: null`` with a note when nothing fits.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ftlab.config import ReportConfig
from ftlab.io import write_json, write_text
from ftlab.metrics import flat
from ftlab.stats import mean_ci, paired_bootstrap

RUN_KEYS = ("method", "seed", "train_size", "n_train", "accuracy", "macro_f1", "trainable_params",
            "total_params", "trainable_percent")
COST_KEYS = ("train_seconds", "train_samples_per_second", "peak_memory_mb", "artifact_bytes",
             "eval_latency_ms_per_sample")
VERDICTS = (None, "ok", "warn", "overfit")  # worst last: a method's verdict is its worst seed's
PLOTS = {"validation_curves.png": "Validation accuracy during training",
         "accuracy_vs_trainable.png": "Accuracy vs trainable parameters",
         "accuracy_vs_time.png": "Accuracy vs train time",
         "learning_curves.png": "Accuracy vs number of training examples"}
HEADERS = ("Method", "Accuracy", "95% CI", "vs best", "Macro-F1", "Trainable % (count)", "Train time (s)",
           "Samples/s", "Peak memory (MB)", "Artifact (MB)", "Overfitting", "Pareto")
CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
       "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}"
       "th:first-child,td:first-child{text-align:left}th{background:#f2f2f2}img{max-width:100%}"
       "blockquote{background:#eef6ee;border-left:4px solid #4a4;margin:0;padding:.8em 1em}")


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _load(run_dirs: list[Path], checks_dirs: list[Path | None]) -> list[dict]:
    """Read and validate every cell. Raises ValueError naming the directory, before anything is written."""
    if not run_dirs:
        raise ValueError("compare needs at least one run directory")
    if len(checks_dirs) != len(run_dirs):
        raise ValueError(f"got {len(run_dirs)} run directories but {len(checks_dirs)} checks directories")
    runs, labels = [], None
    seen: dict[tuple, Path] = {}
    for run_dir, checks_dir in zip(map(Path, run_dirs), checks_dirs, strict=True):
        for name in ("metrics.json", "history.json", "predictions.parquet"):
            if not (run_dir / name).is_file():
                raise ValueError(f"run directory {run_dir} has no {name}")
        metrics = flat(_read_json(run_dir / "metrics.json"))
        missing = [k for k in RUN_KEYS + COST_KEYS if k not in metrics]
        if missing:
            raise ValueError(f"{run_dir / 'metrics.json'} lacks {missing}")
        key = (metrics["method"], metrics["seed"], metrics["train_size"])
        if key in seen:
            raise ValueError(f"method {key[0]!r} at seed {key[1]}, train size {key[2]} appears twice: "
                             f"{seen[key]} and {run_dir}")
        seen[key] = run_dir
        predictions = pd.read_parquet(run_dir / "predictions.parquet", columns=["label", "prediction"])
        if labels is None:
            labels = predictions["label"].to_numpy()
        elif not np.array_equal(labels, predictions["label"].to_numpy()):
            raise ValueError(f"{run_dir} was tested on other examples than {run_dirs[0]}: paired tests need one test set")
        checks: dict[str, Any] = {"verdict": None, "reasons": []}
        if checks_dir is not None:
            if not (Path(checks_dir) / "checks.json").is_file():
                raise ValueError(f"checks directory {checks_dir} has no checks.json")
            checks = _read_json(Path(checks_dir) / "checks.json")
        runs.append({**{k: metrics[k] for k in RUN_KEYS + COST_KEYS},
                     "overfitting": checks["verdict"], "overfitting_reasons": checks.get("reasons", []),
                     "history": _read_json(run_dir / "history.json"),
                     "correct": (predictions["prediction"] == predictions["label"]).to_numpy(dtype=float)})
    return runs


def _summarize(runs: list[dict], level: float) -> dict:
    """One method at one train size, over its seeds."""
    first = runs[0]
    acc, f1 = (mean_ci([r[k] for r in runs], level) for k in ("accuracy", "macro_f1"))
    verdict = max((r["overfitting"] for r in runs), key=VERDICTS.index)
    return {
        "method": first["method"], "train_size": first["train_size"],
        "n_train": round(float(np.mean([r["n_train"] for r in runs]))), "seeds": sorted(r["seed"] for r in runs),
        "accuracy": acc["mean"], "accuracy_std": acc["std"], "accuracy_ci": [acc["ci_low"], acc["ci_high"]],
        "macro_f1": f1["mean"], "macro_f1_std": f1["std"], "macro_f1_ci": [f1["ci_low"], f1["ci_high"]],
        **{k: first[k] for k in ("trainable_params", "total_params", "trainable_percent")},
        **{k: float(np.mean([r[k] for r in runs])) for k in COST_KEYS},
        "overfitting": verdict,
        "overfitting_reasons": sorted({reason for r in runs for reason in r["overfitting_reasons"]}),
    }


def _best(rows: list[dict]) -> dict:
    return max(rows, key=lambda r: (r["accuracy"], -r["trainable_params"], -r["train_seconds"]))


def _test_against_best(rows: list[dict], runs: dict[str, list[dict]], level: float) -> dict:
    """Set ``vs_best`` on every row: a paired bootstrap of it against the best, on their common seeds."""
    best = _best(rows)
    best_by_seed = {r["seed"]: r["correct"] for r in runs[best["method"]]}
    for row in rows:
        if row is best:
            row["vs_best"] = None
            continue
        own = {r["seed"]: r["correct"] for r in runs[row["method"]]}
        common = sorted(own.keys() & best_by_seed.keys())
        row["vs_best"] = paired_bootstrap(np.stack([own[s] for s in common]), np.stack([best_by_seed[s] for s in common]),
                                          level) if common else None
    return best


def _pareto(rows: list[dict], cost: str) -> set[str]:
    """Methods that no other method beats: at least as accurate for no more cost, and strictly better in one."""
    def dominated(r: dict) -> bool:
        return any(o[cost] <= r[cost] and o["accuracy"] >= r["accuracy"]
                   and (o[cost] < r[cost] or o["accuracy"] > r["accuracy"]) for o in rows)
    return {r["method"] for r in rows if not dominated(r)}


def _count(n: float) -> str:
    for suffix, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{suffix}"
    return f"{n:g}"


def _mb(n_bytes: float) -> float:
    return n_bytes / 2**20  # MiB, the same unit as peak_memory_mb


def _budget(rows: list[dict], key: str, budget: float | None, unit: str, what: str) -> dict | None:
    """The most accurate method with ``key`` within ``budget``. None when no budget is set."""
    if budget is None:
        return None
    fits = [r for r in rows if r[key] <= budget]
    if not fits:
        low = min(rows, key=lambda r: r[key])
        return {"method": None, "accuracy": None, "budget": budget,
                "note": f"No method fits the {budget:g} {unit} {what} budget "
                        f"(the lowest is {low['method']} at {low[key]:g} {unit})"}
    pick = _best(fits)
    return {"method": pick["method"], "accuracy": pick["accuracy"], "budget": budget, key: pick[key],
            "note": f"Within the {budget:g} {unit} {what} budget, pick {pick['method']} "
                    f"({pick['accuracy']:.3f} accuracy, {pick[key]:g} {unit})"}


def _equivalent(row: dict, best: dict, tolerance: float) -> bool:
    """Not worth paying for the best instead: not significantly worse, or worse by at most the tolerance."""
    test = row["vs_best"]
    return row is best or best["accuracy"] - row["accuracy"] <= tolerance + 1e-9 or (
        test is not None and test["verdict"] != "worse")


def _p(p: float) -> str:
    """A bootstrap p-value as text: 0 means no resample crossed zero, i.e. below 1 / resamples."""
    return "p<0.0001" if p == 0 else f"p={p:.2g}"


def _significance(row: dict) -> str:
    test = row["vs_best"]
    if test is None:
        return "not tested"
    word = "significantly" if test["verdict"] != "no significant difference" else "not significantly"
    return f"{word} different at {test['level']:.0%} ({_p(test['p_value'])})"


def recommend(rows: list[dict], cfg: ReportConfig) -> dict:
    """Apply the recommendation rules in the module docstring to the rows of the largest train size."""
    best = _best(rows)
    points = 100 * cfg.tolerance
    unit = "point" if points == 1 else "points"
    within = [r for r in rows if _equivalent(r, best, cfg.tolerance)]
    healthy = [r for r in within if r["overfitting"] != "overfit"]
    pick = min(healthy or within, key=lambda r: (r["trainable_params"], r["train_seconds"]))
    why = (f"fewest trainable parameters ({_count(pick['trainable_params'])}, ties broken by train time) "
           f"among the best and the methods not significantly worse than it or within {points:g} {unit}: "
           + ", ".join(r["method"] for r in within))
    skipped = [r["method"] for r in within if r["overfitting"] == "overfit"]
    if skipped:
        why += f"; skipped as overfit: {', '.join(skipped)}" if healthy else "; all of them overfit"
    memory_pick = _budget(rows, "peak_memory_mb", cfg.memory_budget_mb, "MB", "memory")
    time_pick = _budget(rows, "train_seconds", cfg.time_budget_s, "s", "time")

    if pick is best:
        cheaper = [r for r in rows if r["trainable_params"] < best["trainable_params"]]
        text = (f"Pick {best['method']}: it has the best accuracy ({best['accuracy']:.3f}), and "
                + ("every method with fewer trainable parameters is significantly worse by more than "
                   f"{points:g} {unit}." if cheaper else "no method trains fewer parameters."))
    else:
        saved = 1 - pick["train_seconds"] / best["train_seconds"]
        sizes = f"{_mb(pick['artifact_bytes']):.3g} MB", f"{_mb(best['artifact_bytes']):.3g} MB"
        text = (f"Pick {pick['method']}: {pick['accuracy']:.3f} accuracy, "
                f"{100 * (best['accuracy'] - pick['accuracy']):.1f} points below {best['method']} "
                f"({best['accuracy']:.3f}), {_significance(pick)}; it trains {pick['trainable_percent']:.3g}% "
                f"of the parameters in {abs(saved):.0%} {'less' if saved >= 0 else 'more'} time"
                + (f", with an artifact of {sizes[0]} instead of {sizes[1]}." if sizes[0] != sizes[1] else "."))
    text += "".join(f" {b['note']}." for b in (memory_pick, time_pick) if b)
    overfit = [r["method"] for r in rows if r["overfitting"] == "overfit"]
    if overfit:
        text += f" The checks flagged {', '.join(overfit)} as overfit"
        text += "; overfit methods are not recommended as the cheap pick." if skipped and healthy else "."
    return {"best_accuracy": {"method": best["method"], "accuracy": best["accuracy"]},
            "cheapest_within_tolerance": {"method": pick["method"], "accuracy": pick["accuracy"], "why": why},
            "within_memory_budget": memory_pick, "within_time_budget": time_pick, "text": text}


def _crossings(sizes: list[dict]) -> list[dict]:
    """Pairs of methods whose order by mean accuracy flips between two consecutive train sizes."""
    out = []
    for before, after in itertools.pairwise(sizes):
        acc_before = {r["method"]: r["accuracy"] for r in before["rows"]}
        acc_after = {r["method"]: r["accuracy"] for r in after["rows"]}
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
        parts.append(f"at {s['n_train']} examples {s['best']['method']} ({s['best']['accuracy']:.3f})"
                     + (f", not significantly better than {', '.join(tied)}" if tied else ", significantly better than the rest"))
    text = "Best by train size: " + "; ".join(parts) + "."
    for before, after in itertools.pairwise(sizes):
        if before["best"]["method"] != after["best"]["method"]:
            text += (f" The lead passes from {before['best']['method']} to {after['best']['method']} "
                     f"between {before['n_train']} and {after['n_train']} examples.")
    return text


def _scatter(plt: Any, rows: list[dict], key: str, xlabel: str, front: set[str], log_x: bool) -> Any:
    """Accuracy against one cost: labelled points with CI bars, the Pareto front as a staircase, overfit runs as red x's."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    on = sorted((r for r in rows if r["method"] in front), key=lambda r: r[key])
    ax.plot([r[key] for r in on], [r["accuracy"] for r in on], drawstyle="steps-post", color="tab:orange",
            lw=2, zorder=1, label="Pareto front (best accuracy at this cost or less)")
    for r in rows:
        overfit = r["overfitting"] == "overfit"
        color = "tab:red" if overfit else "tab:orange" if r["method"] in front else "tab:blue"
        low, high = r["accuracy_ci"]
        if low is not None:
            ax.errorbar(r[key], r["accuracy"], yerr=[[r["accuracy"] - low], [high - r["accuracy"]]], color=color,
                        capsize=3, lw=1, zorder=2)
        ax.scatter(r[key], r["accuracy"], s=60, zorder=3, marker="x" if overfit else "o", color=color)
        ax.annotate(r["method"] + (" (overfit)" if overfit else ""), (r[key], r["accuracy"]),
                    textcoords="offset points", xytext=(6, 4 if r["method"] in front else -12), fontsize=9)
    if log_x:
        ax.set_xscale("log")
    ax.margins(x=0.12, y=0.08)
    ax.set(xlabel=xlabel, ylabel="test accuracy (mean over seeds, 95% CI)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False, fontsize=8)
    return fig


def _plots(rows: list[dict], runs: dict[str, list[dict]], sizes: list[dict]) -> dict[str, bytes]:
    """Render the plots to PNG bytes, keyed by file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {r["method"]: f"C{i}" for i, r in enumerate(sorted(rows, key=lambda r: r["method"]))}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, method_runs in runs.items():
        for i, run in enumerate(method_runs):
            points = [(h["step"], h["validation_accuracy"]) for h in run["history"] if "validation_accuracy" in h]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", ms=3, alpha=0.8, color=colors[method], label=None if i else method)
    ax.set(xlabel="step", ylabel="validation accuracy (each seed)")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    figs = [fig,
            _scatter(plt, rows, "trainable_params", "trainable parameters (log scale)", _pareto(rows, "trainable_params"), True),
            _scatter(plt, rows, "train_seconds", "train time (s)", _pareto(rows, "train_seconds"), False)]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in colors:
        curve = [next(r for r in s["rows"] if r["method"] == method) for s in sizes
                 if any(r["method"] == method for r in s["rows"])]
        x = [r["n_train"] for r in curve]
        ax.plot(x, [r["accuracy"] for r in curve], marker="o", color=colors[method], label=method)
        if all(r["accuracy_ci"][0] is not None for r in curve):
            ax.fill_between(x, [r["accuracy_ci"][0] for r in curve], [r["accuracy_ci"][1] for r in curve],
                            color=colors[method], alpha=0.15)
    if len(sizes) > 1:
        ax.set_xscale("log")
    ax.set(xlabel="training examples", ylabel="test accuracy (mean, 95% CI band)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    figs.append(fig)
    out = {}
    for (name, title), fig in zip(PLOTS.items(), figs, strict=True):
        fig.axes[0].set_title(title)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        out[name] = buf.getvalue()
    return out


def _interval(ci: list[float | None]) -> str:
    return "n/a (1 seed)" if ci[0] is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _mean_std(mean: float, std: float | None) -> str:
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def _vs_best(r: dict, best: str) -> str:
    test = r["vs_best"]
    if test is None:
        return "best" if r["method"] == best else "not tested"
    short = {"better": "better", "worse": "worse", "no significant difference": "n.s."}[test["verdict"]]
    return f"{100 * test['difference']:+.1f} pts, {short} ({_p(test['p_value'])})"


def _cells(r: dict, best: str) -> list[str]:
    return [r["method"], _mean_std(r["accuracy"], r["accuracy_std"]), _interval(r["accuracy_ci"]), _vs_best(r, best),
            _mean_std(r["macro_f1"], r["macro_f1_std"]),
            f"{r['trainable_percent']:.3g}% ({_count(r['trainable_params'])})", f"{r['train_seconds']:.1f}",
            f"{r['train_samples_per_second']:.1f}", f"{r['peak_memory_mb']:.0f}", f"{_mb(r['artifact_bytes']):.3g}",
            r["overfitting"] or "not checked", "yes" if r["pareto"] else ""]


def _table(headers: tuple[str, ...] | list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)] + ["| " + " | ".join(c) + " |" for c in rows]


def _markdown(result: dict) -> str:
    seeds, level = result["seeds"], result["confidence"]
    lines = ["# Fine-tuning comparison", "", "> " + result["recommendation"]["text"], "",
             f"## At {result['methods'][0]['n_train']} training examples", ""]
    best = result["recommendation"]["best_accuracy"]["method"]
    lines += _table(HEADERS, [_cells(r, best) for r in result["methods"]])
    lines += ["", f"Test-set accuracy and macro-F1: mean ± std over {len(seeds)} seed(s) ({', '.join(map(str, seeds))}); "
              f"{level:.0%} CI: Student t over seeds. vs best: mean difference to the best method, paired bootstrap "
              "over the same seeds and test examples (n.s.: not significant). Costs are means over seeds. Peak memory: "
              "on CPU the peak resident memory (RSS) of the process that trained the cell, a process of its own under "
              "both `dvc repro` and `ftlab pipeline` (Python, torch, the model and the data included); on a GPU the "
              "peak memory torch allocated. Pareto: on the accuracy-vs-trainable-parameters front.", ""]
    if len(result["by_size"]) > 1:
        methods = [r["method"] for r in result["methods"]]
        stats = {(s["method"], s["train_size"]): s for s in result["summary"]}
        table = []
        for size in result["by_size"]:
            cells = [f"{size['n_train']}"]
            for m in methods:
                s = stats.get((m, size["train_size"]))
                mark = "**" if m == size["best"] else ""
                cells.append("" if s is None else f"{mark}{s['mean']:.3f}{mark} {_interval([s['ci_low'], s['ci_high']])}")
            table.append(cells)
        lines += ["## Data-size sweep", "", result["by_size_text"], ""]
        lines += _table(["Training examples", *methods], table)
        lines += ["", "Mean accuracy and 95% CI per train size; bold: the best at that size.", ""]
        if result["crossings"]:
            lines += ["Curves that cross (order of means flips between two sizes): " + "; ".join(
                f"{c['overtaker']} overtakes {c['overtaken']} between {c['between'][0]} and {c['between'][1]}"
                for c in result["crossings"]) + ". A crossing compares means: between methods that the tests "
                "at those sizes do not tell apart, it is within the noise.", ""]
    if result["search"]:
        lines += ["## Hyperparameters chosen by search", ""]
        lines += _table(["Method", "Chosen", "Validation score", "Trials"], [
            [m, ", ".join(f"{k}={v:g}" for k, v in s["chosen"].items()),
             f"{next(t['validation'] for t in s['trials'] if t['params'] == s['chosen']):.3f}",
             str(len(s["trials"]))] for m, s in result["search"].items()])
        lines += ["", "Each method's own grid (learning rate × its own knobs), searched on the validation split "
                  f"at {next(iter(result['search'].values()))['train_size']} training examples.", ""]
    lines += [f"![{title}]({name})\n" for name, title in PLOTS.items()]
    return "\n".join(lines)


def _html(markdown: str, pngs: dict[str, bytes]) -> str:
    """The markdown report as one self-contained page: plots inlined, no scripts, no links out."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown)
    for name, data in pngs.items():
        body = body.replace(f'src="{name}"', f'src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}"')
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Fine-tuning comparison</title>'
            f"<style>{CSS}</style></head><body>{body}</body></html>\n")


def _search(paths: list[Path]) -> dict[str, dict]:
    return {s["method"]: s for s in map(_read_json, paths) if s.get("enabled")}


def compare(run_dirs: list[Path], checks_dirs: list[Path | None], cfg: ReportConfig, out_dir: Path,
            search_files: Sequence[Path] = ()) -> dict:
    """Compare cells and write comparison.{json,md,html} and the plots into ``out_dir``. Returns the comparison."""
    runs = _load(run_dirs, checks_dirs)
    groups: dict[Any, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        groups[run["train_size"]][run["method"]].append(run)
    sizes = []
    for size, by_method in groups.items():
        rows = [_summarize(method_runs, cfg.confidence) for method_runs in by_method.values()]
        best = _test_against_best(rows, by_method, cfg.confidence)
        sizes.append({"train_size": size, "n_train": best["n_train"], "best": best,
                      "rows": sorted(rows, key=lambda r: -r["accuracy"])})
    sizes.sort(key=lambda s: s["n_train"])
    main = sizes[-1]
    rows = main["rows"]
    front_params, front_time = _pareto(rows, "trainable_params"), _pareto(rows, "train_seconds")
    for r in rows:
        r["pareto"], r["pareto_time"] = r["method"] in front_params, r["method"] in front_time
    result = {
        "methods": rows,
        "recommendation": recommend(rows, cfg),
        "confidence": cfg.confidence,
        "seeds": sorted({r["seed"] for r in runs}),
        "train_sizes": [s["train_size"] for s in sizes],
        "by_size": [{"train_size": s["train_size"], "n_train": s["n_train"], "best": s["best"]["method"],
                     "tests": {r["method"]: r["vs_best"] for r in s["rows"] if r is not s["best"]}} for s in sizes],
        "by_size_text": _by_size(sizes),
        "crossings": _crossings(sizes),
        "summary": [{"method": r["method"], "train_size": s["train_size"], "n_train": r["n_train"],
                     "mean": r["accuracy"], "std": r["accuracy_std"], "ci_low": r["accuracy_ci"][0],
                     "ci_high": r["accuracy_ci"][1], "n": len(r["seeds"]),
                     "macro_f1": r["macro_f1"], "train_seconds": r["train_seconds"]} for s in sizes for r in s["rows"]],
        "cells": [{k: run[k] for k in (*RUN_KEYS, "train_seconds", "overfitting")} for run in runs],
        "search": _search(list(search_files)),
    }
    pngs = _plots(rows, groups[main["train_size"]], sizes)
    markdown = _markdown(result)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, data in pngs.items():
        tmp = out_dir / f".{name}.tmp-{os.getpid()}"
        tmp.write_bytes(data)
        os.replace(tmp, out_dir / name)
    write_json(out_dir / "comparison.json", result)
    write_text(out_dir / "comparison.md", markdown)
    write_text(out_dir / "comparison.html", _html(markdown, pngs))
    return result
