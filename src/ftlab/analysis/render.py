"""The comparison report's words and pictures: the markdown, the self-contained HTML page and the
PNG plots, all rendered from the ``comparison.json`` result that :mod:`ftlab.analysis.report` computes."""

from __future__ import annotations

import base64
import io
from typing import Any

from ftlab.core.escape import md_code, md_text
from ftlab.learning.tasks import Metric

PLOTS = {"validation_curves.png": "Validation {metric} during training",
         "quality_vs_trainable.png": "Test {metric} vs trainable parameters",
         "quality_vs_time.png": "Test {metric} vs train time",
         "learning_curves.png": "Test {metric} vs number of training examples"}
HEADERS = ("Method", "{metric}", "95% CI", "vs best", "{secondary}", "Trainable % (count)", "Train time (s)",
           "Samples/s", "Peak memory (MB)", "Artifact (MB)", "Overfitting", "Pareto")
CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
       "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}"
       "th:first-child,td:first-child{text-align:left}th{background:#f2f2f2}img{max-width:100%}"
       "blockquote{background:#eef6ee;border-left:4px solid #4a4;margin:0;padding:.8em 1em}")


def count(n: float) -> str:
    for suffix, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{suffix}"
    return f"{n:g}"


def mib(n_bytes: float) -> float:
    return n_bytes / 2**20  # MiB, the same unit as peak_memory_mb


def p_value(p: float) -> str:
    """A bootstrap p-value as text: 0 means no resample crossed zero, i.e. below 1 / resamples."""
    return "p<0.0001" if p == 0 else f"p={p:.2g}"


def _scatter(plt: Any, rows: list[dict], key: str, xlabel: str, front: set[str], log_x: bool, metric: str) -> Any:
    """The primary metric against one cost: labelled points with CI bars, the Pareto front as a staircase, overfit runs as red x's."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    on = sorted((r for r in rows if r["method"] in front), key=lambda r: r[key])
    ax.plot([r[key] for r in on], [r["primary"] for r in on], drawstyle="steps-post", color="tab:orange",
            lw=2, zorder=1, label=f"Pareto front (best {metric} at this cost or less)")
    for r in rows:
        overfit = r["overfitting"] == "overfit"
        color = "tab:red" if overfit else "tab:orange" if r["method"] in front else "tab:blue"
        low, high = r["primary_ci"]
        if low is not None:
            ax.errorbar(r[key], r["primary"], yerr=[[r["primary"] - low], [high - r["primary"]]], color=color,
                        capsize=3, lw=1, zorder=2)
        ax.scatter(r[key], r["primary"], s=60, zorder=3, marker="x" if overfit else "o", color=color)
        ax.annotate(r["method"] + (" (overfit)" if overfit else ""), (r[key], r["primary"]),
                    textcoords="offset points", xytext=(6, 4 if r["method"] in front else -12), fontsize=9)
    if log_x:
        ax.set_xscale("log")
    ax.margins(x=0.12, y=0.08)
    ax.set(xlabel=xlabel, ylabel=f"test {metric} (mean over seeds, 95% CI)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False, fontsize=8)
    return fig


def plots(rows: list[dict], runs: dict[str, list[dict]], sizes: list[dict], metric: Metric) -> dict[str, bytes]:
    """Render the plots to PNG bytes, keyed by file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {r["method"]: f"C{i}" for i, r in enumerate(sorted(rows, key=lambda r: r["method"]))}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, method_runs in runs.items():
        for i, run in enumerate(method_runs):
            key = f"validation_{metric.name}"
            points = [(h["step"], h[key]) for h in run["history"] if key in h]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", ms=3, alpha=0.8, color=colors[method], label=None if i else method)
    ax.set(xlabel="step", ylabel=f"validation {metric.label} (each seed)")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    figs = [fig,
            _scatter(plt, rows, "trainable_params", "trainable parameters (log scale)", {r["method"] for r in rows if r["pareto"]},
                     True, metric.label),
            _scatter(plt, rows, "train_seconds", "train time (s)", {r["method"] for r in rows if r["pareto_time"]}, False, metric.label)]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in colors:
        curve = [next(r for r in s["rows"] if r["method"] == method) for s in sizes
                 if any(r["method"] == method for r in s["rows"])]
        x = [r["n_train"] for r in curve]
        ax.plot(x, [r["primary"] for r in curve], marker="o", color=colors[method], label=method)
        if all(r["primary_ci"][0] is not None for r in curve):
            ax.fill_between(x, [r["primary_ci"][0] for r in curve], [r["primary_ci"][1] for r in curve],
                            color=colors[method], alpha=0.15)
    if len(sizes) > 1:
        ax.set_xscale("log")
    ax.set(xlabel="training examples", ylabel=f"test {metric.label} (mean, 95% CI band)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    figs.append(fig)
    out = {}
    for (name, title), fig in zip(PLOTS.items(), figs, strict=True):
        fig.axes[0].set_title(title.format(metric=metric.label))
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        out[name] = buf.getvalue()
    return out


def _interval(ci: list[float | None]) -> str:
    return "n/a (1 seed)" if ci[0] is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _mean_std(mean: float, std: float | None) -> str:
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def _difference(test: dict, points: bool) -> str:
    return f"{100 * test['difference']:+.1f} pts" if points else f"{test['difference']:+.3g}"


def _vs_best(r: dict, best: str, points: bool) -> str:
    test = r["vs_best"]
    if test is None:
        return "best" if r["method"] == best else "not tested"
    short = {"better": "better", "worse": "worse", "no significant difference": "n.s."}[test["verdict"]]
    return f"{_difference(test, points)}, {short} ({p_value(test['p_value'])})"


def _cells(r: dict, best: str, secondary: str, points: bool) -> list[str]:
    return [md_text(r["method"]), _mean_std(r["primary"], r["primary_std"]), _interval(r["primary_ci"]), _vs_best(r, best, points),
            _mean_std(r[secondary], r[f"{secondary}_std"]),
            f"{r['trainable_percent']:.3g}% ({count(r['trainable_params'])})", f"{r['train_seconds']:.1f}",
            f"{r['train_samples_per_second']:.1f}", f"{r['peak_memory_mb']:.0f}", f"{mib(r['artifact_bytes']):.3g}",
            r["overfitting"] or "not checked", "yes" if r["pareto"] else ""]


def _table(headers: tuple[str, ...] | list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)] + ["| " + " | ".join(c) + " |" for c in rows]


def markdown(result: dict) -> str:
    seeds, level, metric = result["seeds"], result["confidence"], result["primary_metric"]
    label, secondary = metric["label"], result["metrics"][1] if len(result["metrics"]) > 1 else result["metrics"][0]
    lines = ["# Fine-tuning comparison", "", f"Task: {md_code(result['task'])}; primary metric: {label} "
             f"({'higher' if metric['higher_is_better'] else 'lower'} is better).", "",
             "> " + md_text(result["recommendation"]["text"]), "",
             f"## At {result['methods'][0]['n_train']} training examples", ""]
    best = result["recommendation"]["best"]["method"]
    headers = [h.format(metric=label.capitalize(), secondary=secondary["label"].capitalize()) for h in HEADERS]
    lines += _table(headers, [_cells(r, best, secondary["name"], metric["points"]) for r in result["methods"]])
    lines += ["", f"Test-set {label} and {secondary['label']}: mean ± std over {len(seeds)} seed(s) "
              f"({', '.join(map(str, seeds))}); {level:.0%} CI: Student t over seeds. vs best: difference in "
              f"{metric['statistic']} to the best method, paired bootstrap over the same seeds and test examples (n.s.: "
              f"not significant). Costs are means over seeds; peak memory is {_memory_note(result)}. Pareto: on the "
              f"{label}-vs-trainable-parameters front.", ""]
    lines += _baseline_lines(result)
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
        lines += ["## Data-size sweep", "", md_text(result["by_size_text"]), ""]
        lines += _table(["Training examples", *map(md_text, methods)], table)
        lines += ["", f"Mean {label} and 95% CI per train size; bold: the best at that size.", ""]
        if result["crossings"]:
            lines += ["Curves that cross (order of means flips between two sizes): " + "; ".join(
                f"{md_text(c['overtaker'])} overtakes {md_text(c['overtaken'])} between {c['between'][0]} and {c['between'][1]}"
                for c in result["crossings"]) + ". A crossing compares means: between methods that the tests "
                "at those sizes do not tell apart, it is within the noise.", ""]
    if result["search"]:
        lines += ["## Hyperparameters chosen by search", ""]
        lines += _table(["Method", "Chosen", "Validation score", "Trials"], [
            [md_text(m), ", ".join(f"{md_text(k)}={v:g}" for k, v in s["chosen"].items()),
             f"{next(t['validation'] for t in s['trials'] if t['params'] == s['chosen'] and t.get('state') != 'pruned'):.3f}",
             f"{len(s['trials'])} ({s.get('pruned', 0)} pruned)"] for m, s in result["search"].items()])
        lines += ["", "Each method's own space (learning rate × its own knobs), searched by an Optuna study (a grid "
                  "sampler when the grid fits in the trials, else TPE) on the validation split at "
                  f"{next(iter(result['search'].values()))['train_size']} training examples; a pruned trial stopped "
                  "early, behind the others at a rung of successive halving.", ""]
    lines += [f"![{title.format(metric=label)}]({name})\n" for name, title in PLOTS.items()]
    return "\n".join(lines)


def _memory_note(result: dict) -> str:
    kinds = {r.get("memory_kind") for r in result["cells"]}
    return ("the peak memory torch allocated on the GPU while training" if kinds == {"cuda_allocated"}
            else "the peak resident memory (RSS) of the process that trained the cell, a process of its own under "
                 "both `dvc repro` and `ftlab pipeline` (Python, torch, the model and the data included)")


def _baseline_lines(result: dict) -> list[str]:
    """The baselines' table and, in words, whether the best method beats each of them."""
    if not result["baselines"]:
        return []
    metric, best = result["primary_metric"], result["recommendation"]["best"]
    rows, findings = [], []
    for b in result["baselines"]:
        test = b["best_vs_baseline"]
        rows.append([f"baseline:{b['name']}", f"{b['value']:.3f}", f"{_difference(test, metric['points'])}, "
                     f"{test['verdict']} ({p_value(test['p_value'])})"])
        if test["verdict"] != "better":
            findings.append(f"**{best['method']} does not beat the {b['name'].replace('_', ' ')} baseline** "
                            f"({best['value']:.3f} vs {b['value']:.3f}, {test['verdict']}): fine-tuning did not pay here")
    lines = ["## Baselines", ""]
    lines += _table(["Baseline", metric["label"].capitalize(), f"Best ({best['method']}) vs baseline"], rows)
    lines += ["", "; ".join(findings) + "." if findings else
              f"The best method, {best['method']}, is significantly better than every baseline.", ""]
    return lines


def html(text: str, pngs: dict[str, bytes]) -> str:
    """The markdown report as one self-contained page: plots inlined, no scripts, no links out.

    The markdown escapes user strings already (ftlab.core.escape); markdown-it's ``html`` option is off
    as well, so raw HTML that reached the text some other way is shown, never run."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)  # raw HTML shows as text
    for name, data in pngs.items():
        body = body.replace(f'src="{name}"', f'src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}"')
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Fine-tuning comparison</title>'
            f"<style>{CSS}</style></head><body>{body}</body></html>\n")
