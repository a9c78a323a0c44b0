"""Compare fine-tuning runs and recommend one, using measured numbers only.

Claims like "LoRA matches full fine-tuning with 0.1% of the parameters" are folklore until someone
measures them on your data, model and hardware. This stage reads the run directories that
:func:`ftlab.train.train` wrote, plus the overfitting verdicts, and writes the result three ways:
``comparison.json`` for programs, ``comparison.md`` for the repository, and a self-contained
``comparison.html`` for people. It also writes three plots.

Recommendation rules (accuracy is test-set accuracy):

* ``best_accuracy``: the highest accuracy. Ties go to fewer trainable parameters, then less train time.
* ``cheapest_within_tolerance``: among methods with accuracy >= best - ``tolerance``, the one with
  the fewest trainable parameters (ties: less train time). "Cost" here means trainable
  parameters, since they set the artifact size and optimizer state. Train time is reported
  beside it and never mixed in. Methods whose checks say "overfit" are skipped unless every
  qualifying method overfits.
* ``within_memory_budget`` / ``within_time_budget``: the most accurate method whose
  ``peak_memory_mb`` / ``train_seconds`` is at most the budget. Null when no budget is set;
  ``method: null`` with a note when nothing fits.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path
from typing import Any

from ftlab.config import ReportConfig
from ftlab.io import write_json, write_text
from ftlab.metrics import flat

ROW_KEYS = ("method", "accuracy", "macro_f1", "trainable_params", "total_params", "trainable_percent",
            "train_seconds", "train_samples_per_second", "peak_memory_mb", "artifact_bytes",
            "eval_latency_ms_per_sample")
PLOTS = {"validation_curves.png": "Validation accuracy during training",
         "accuracy_vs_trainable.png": "Accuracy vs trainable parameters",
         "accuracy_vs_time.png": "Accuracy vs train time"}
HEADERS = ("Method", "Accuracy", "Macro-F1", "Trainable % (count)", "Train time (s)", "Samples/s",
           "Peak memory (MB)", "Artifact (MB)", "Overfitting", "Pareto")
CSS = ("body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}"
       "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}"
       "th:first-child,td:first-child{text-align:left}th{background:#f2f2f2}"
       ".rec{background:#eef6ee;border-left:4px solid #4a4;padding:.8em 1em}img{max-width:100%}")


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _load(run_dirs: list[Path], checks_dirs: list[Path | None]) -> tuple[list[dict], dict[str, list[dict]]]:
    """Read and validate every input. Raises ValueError naming the directory, before anything is written."""
    if not run_dirs:
        raise ValueError("compare needs at least one run directory")
    if len(checks_dirs) != len(run_dirs):
        raise ValueError(f"got {len(run_dirs)} run directories but {len(checks_dirs)} checks directories")
    rows, histories = [], {}
    for run_dir, checks_dir in zip(map(Path, run_dirs), checks_dirs):
        for name in ("metrics.json", "history.json"):
            if not (run_dir / name).is_file():
                raise ValueError(f"run directory {run_dir} has no {name}")
        metrics = flat(_read_json(run_dir / "metrics.json"))
        missing = [k for k in ROW_KEYS if k not in metrics]
        if missing:
            raise ValueError(f"{run_dir / 'metrics.json'} lacks {missing}")
        if metrics["method"] in histories:
            raise ValueError(f"method {metrics['method']!r} appears twice (again in {run_dir})")
        checks: dict[str, Any] = {"verdict": None, "reasons": []}
        if checks_dir is not None:
            if not (Path(checks_dir) / "checks.json").is_file():
                raise ValueError(f"checks directory {checks_dir} has no checks.json")
            checks = _read_json(Path(checks_dir) / "checks.json")
        rows.append({**{k: metrics[k] for k in ROW_KEYS},
                     "overfitting": checks["verdict"], "overfitting_reasons": checks.get("reasons", [])})
        histories[metrics["method"]] = _read_json(run_dir / "history.json")
    return sorted(rows, key=lambda r: -r["accuracy"]), histories


def _pareto(rows: list[dict], cost: str) -> set[str]:
    """Methods that no other method beats: at least as accurate for no more cost, and strictly better in one."""
    def dominated(r: dict) -> bool:
        return any(o[cost] <= r[cost] and o["accuracy"] >= r["accuracy"]
                   and (o[cost] < r[cost] or o["accuracy"] > r["accuracy"]) for o in rows)
    return {r["method"] for r in rows if not dominated(r)}


def _best(rows: list[dict]) -> dict:
    return max(rows, key=lambda r: (r["accuracy"], -r["trainable_params"], -r["train_seconds"]))


def _count(n: float) -> str:
    for suffix, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{suffix}"
    return f"{n:g}"


def _mb(n_bytes: int) -> float:
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


def recommend(rows: list[dict], cfg: ReportConfig) -> dict:
    """Apply the recommendation rules in the module docstring to the comparison rows."""
    best = _best(rows)
    points = 100 * cfg.tolerance
    unit = "point" if points == 1 else "points"
    within = [r for r in rows if r["accuracy"] >= best["accuracy"] - cfg.tolerance - 1e-9]
    healthy = [r for r in within if r["overfitting"] != "overfit"]
    pick = min(healthy or within, key=lambda r: (r["trainable_params"], r["train_seconds"]))
    why = (f"fewest trainable parameters ({_count(pick['trainable_params'])}, ties broken by train time) "
           f"among the methods within {points:g} {unit} of the best accuracy: "
           + ", ".join(r["method"] for r in within))
    skipped = [r["method"] for r in within if r["overfitting"] == "overfit"]
    if skipped:
        why += f"; skipped as overfit: {', '.join(skipped)}" if healthy else "; all of them overfit"
    memory_pick = _budget(rows, "peak_memory_mb", cfg.memory_budget_mb, "MB", "memory")
    time_pick = _budget(rows, "train_seconds", cfg.time_budget_s, "s", "time")

    if pick is best:
        text = (f"Pick {best['method']}: it has the best accuracy ({best['accuracy']:.3f}), and no method "
                f"with fewer trainable parameters comes within {points:g} {unit} of it.")
    else:
        saved = 1 - pick["train_seconds"] / best["train_seconds"]
        sizes = f"{_mb(pick['artifact_bytes']):.3g} MB", f"{_mb(best['artifact_bytes']):.3g} MB"
        text = (f"Pick {pick['method']}: {pick['accuracy']:.3f} accuracy, "
                f"{100 * (best['accuracy'] - pick['accuracy']):.1f} points below {best['method']} "
                f"({best['accuracy']:.3f}), training {pick['trainable_percent']:.3g}% of the parameters "
                f"in {abs(saved):.0%} {'less' if saved >= 0 else 'more'} time"
                + (f", with an artifact of {sizes[0]} instead of {sizes[1]}." if sizes[0] != sizes[1] else "."))
    text += "".join(f" {b['note']}." for b in (memory_pick, time_pick) if b)
    overfit = [r["method"] for r in rows if r["overfitting"] == "overfit"]
    if overfit:
        text += f" The checks flagged {', '.join(overfit)} as overfit"
        text += "; overfit methods are not recommended as the cheap pick." if skipped and healthy else "."
    return {"best_accuracy": {"method": best["method"], "accuracy": best["accuracy"]},
            "cheapest_within_tolerance": {"method": pick["method"], "accuracy": pick["accuracy"], "why": why},
            "within_memory_budget": memory_pick, "within_time_budget": time_pick, "text": text}


def _scatter(plt: Any, rows: list[dict], key: str, xlabel: str, front: set[str], log_x: bool) -> Any:
    """Accuracy against one cost: labelled points, the Pareto front as a staircase, overfit runs as red x's."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    on = sorted((r for r in rows if r["method"] in front), key=lambda r: r[key])
    ax.plot([r[key] for r in on], [r["accuracy"] for r in on], drawstyle="steps-post", color="tab:orange",
            lw=2, zorder=1, label="Pareto front (best accuracy at this cost or less)")
    for r in rows:
        overfit = r["overfitting"] == "overfit"
        ax.scatter(r[key], r["accuracy"], s=60, zorder=2, marker="x" if overfit else "o",
                   color="tab:red" if overfit else "tab:orange" if r["method"] in front else "tab:blue")
        ax.annotate(r["method"] + (" (overfit)" if overfit else ""), (r[key], r["accuracy"]),
                    textcoords="offset points", xytext=(6, 4 if r["method"] in front else -12), fontsize=9)
    if log_x:
        ax.set_xscale("log")
    ax.margins(x=0.12, y=0.08)
    ax.set(xlabel=xlabel, ylabel="test accuracy")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False, fontsize=8)
    return fig


def _plots(rows: list[dict], histories: dict[str, list[dict]], front_params: set[str],
           front_time: set[str]) -> dict[str, bytes]:
    """Render the three plots to PNG bytes, keyed by file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, history in histories.items():
        points = [(h["step"], h["validation_accuracy"]) for h in history if "validation_accuracy" in h]
        if points:
            ax.plot(*zip(*points), marker="o", ms=3, label=method)
    ax.set(xlabel="step", ylabel="validation accuracy")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    figs = [fig, _scatter(plt, rows, "trainable_params", "trainable parameters (log scale)", front_params, True),
            _scatter(plt, rows, "train_seconds", "train time (s)", front_time, False)]
    out = {}
    for (name, title), fig in zip(PLOTS.items(), figs):
        fig.axes[0].set_title(title)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        out[name] = buf.getvalue()
    return out


def _cells(r: dict) -> list[str]:
    return [r["method"], f"{r['accuracy']:.3f}", f"{r['macro_f1']:.3f}",
            f"{r['trainable_percent']:.3g}% ({_count(r['trainable_params'])})", f"{r['train_seconds']:.1f}",
            f"{r['train_samples_per_second']:.1f}", f"{r['peak_memory_mb']:.0f}", f"{_mb(r['artifact_bytes']):.3g}",
            r["overfitting"] or "not checked", "yes" if r["pareto"] else ""]


NOTE = ("Accuracy and macro-F1 are on the held-out test set. Pareto: on the accuracy-vs-trainable-parameters "
        "front (no method is at least as accurate with fewer trainable parameters).")


def _markdown(result: dict) -> str:
    lines = ["# Fine-tuning comparison", "", result["recommendation"]["text"], "",
             "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in result["methods"]]
    lines += ["", NOTE, ""] + [f"![{title}]({name})\n" for name, title in PLOTS.items()]
    return "\n".join(lines)


def _html(result: dict, pngs: dict[str, bytes]) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in HEADERS)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in _cells(r)) + "</tr>" for r in result["methods"])
    images = "".join(f'<h3>{esc(title)}</h3><img alt="{esc(title)}" src="data:image/png;base64,'
                     f'{base64.b64encode(pngs[name]).decode("ascii")}">' for name, title in PLOTS.items())
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Fine-tuning comparison</title>'
            f"<style>{CSS}</style></head><body><h1>Fine-tuning comparison</h1>"
            f'<p class="rec">{esc(result["recommendation"]["text"])}</p>'
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table><p>{esc(NOTE)}</p>"
            f"{images}</body></html>\n")


def compare(run_dirs: list[Path], checks_dirs: list[Path | None], cfg: ReportConfig, out_dir: Path) -> dict:
    """Compare runs and write comparison.{json,md,html} and the plots into ``out_dir``. Returns the comparison."""
    rows, histories = _load(run_dirs, checks_dirs)
    front_params, front_time = _pareto(rows, "trainable_params"), _pareto(rows, "train_seconds")
    for r in rows:
        r["pareto"], r["pareto_time"] = r["method"] in front_params, r["method"] in front_time
    result = {"methods": rows, "recommendation": recommend(rows, cfg)}
    pngs = _plots(rows, histories, front_params, front_time)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, data in pngs.items():
        tmp = out_dir / f".{name}.tmp-{os.getpid()}"
        tmp.write_bytes(data)
        os.replace(tmp, out_dir / name)
    write_json(out_dir / "comparison.json", result)
    write_text(out_dir / "comparison.md", _markdown(result))
    write_text(out_dir / "comparison.html", _html(result, pngs))
    return result
