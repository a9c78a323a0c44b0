"""Pairs encoded jointly (cross-encoder) or apart (bi-encoder), against the zero-shot cosine (issue 29).

    python benchmarks/pairs.py                                   # every cell of STS-B and RTE
    python benchmarks/pairs.py --datasets stsb --cells full:bi full:cross

Each cell trains in its own ``ftlab train`` process on the **targets** recipe of the tasks benchmark
(``benchmarks/params/tasks_<dataset>_targets.yaml``: all of train.tsv, 10% carved off for
validation, early stopping on it) with ``task.pair_encoding`` set, and is scored on dev.tsv, which
training never sees. The bi-encoder's full fine-tuning takes sentence-transformers' STS-B recipe
learning rate (2e-5, its ``training_stsb.py`` example; chosen before any run, not on the test set);
the cross-encoder keeps the targets recipe's (full: STS-B 1e-4, RTE 3e-5). Baselines: the task's trivial predictor,
and for STS-B the zero-shot cosine of MiniLM's mean-pooled embeddings (the untrained bi-encoder).
Every trained cell is compared with every baseline, and bi with cross for the same method, by the
project's paired bootstrap on the task's primary metric (Spearman re-ranked per resample,
accuracy). Writes ``benchmarks/results/pairs.json`` (re-running cells replaces only their rows)
and ``pairs.md``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks import HERE, _parsed, params_file, row

log = logging.getLogger("pairs")
RESULTS = HERE / "results"
WORK = HERE / ".work" / "pairs"
DATASETS = ["stsb", "rte"]
CELLS = ["full:cross", "full:bi", "lora:bi", "lora:cross"]
DEFAULT_CELLS = CELLS[:3]
BI_LR = {"full": 2e-5}  # sentence-transformers' STS-B example; other methods keep their default


def config(dataset: str, encoding: str = "cross", method: str = "full") -> Any:
    from ftlab.learning.config import load_config

    return load_config(params_file(dataset, "targets"), _parsed(overrides(dataset, encoding, method)))


def overrides(dataset: str, encoding: str, method: str) -> list[str]:
    out = [f"task.pair_encoding={encoding}", f"methods=[{method}]",
           f"data.prepared_dir=benchmarks/.work/pairs/{dataset}/data-{encoding}"]  # the task options are in its fingerprint
    if encoding == "bi" and method in BI_LR:
        out.append(f"method_params.{method}.lr={BI_LR[method]}")
    return out


def train_cell(dataset: str, method: str, encoding: str) -> tuple[dict, pd.DataFrame | None]:
    """One ``ftlab train`` process; its row and test predictions."""
    out = WORK / dataset / f"{method}-{encoding}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = ["ftlab", "train", "-m", method, "-p", str(params_file(dataset, "targets")), "--out", str(out),
           *(f"-S{s}" for s in overrides(dataset, encoding, method))]
    log.info("$ %s", " ".join(cmd))
    logged = WORK / "logs" / f"{dataset}_{method}_{encoding}.log"
    with open(logged, "w") as logfile:
        subprocess.run(cmd, stdout=logfile, stderr=subprocess.STDOUT, text=True)
    if not (out / "metrics.json").is_file():
        tail = " ".join(logged.read_text().strip().splitlines()[-1:])
        log.error("%s/%s (%s) failed: %s", dataset, method, encoding, tail)
        cfg = config(dataset, encoding, method)
        return row(dataset, cfg, f"{method} ({encoding})", None, encoding=encoding, note=f"error: {tail}"), None
    return saved_cell(dataset, method, encoding)


def saved_cell(dataset: str, method: str, encoding: str) -> tuple[dict, pd.DataFrame]:
    """The row and test predictions of a trained cell's run directory."""
    from ftlab.core.record import read_record

    cfg, out = config(dataset, encoding, method), WORK / dataset / f"{method}-{encoding}"
    record = read_record(out)
    extra = {"steps": record.steps, "best_step": record.best_step, "epochs": record.epochs,
             "threads": record.cost.threads, "precision": record.cost.precision}
    r = row(dataset, cfg, f"{method} ({encoding})", record.table_row(), encoding=encoding, lr=cfg.params_for(method).lr,
            **extra)
    log.info("%s/%s: %s %.4f in %.0fs", dataset, r["method"], r["metric"], r["value"], r["train_seconds"])
    return r, pd.read_parquet(out / "predictions.parquet")


def baseline_cells(dataset: str) -> list[tuple[dict, pd.DataFrame]]:
    """The trivial predictor and, for pair regression, the zero-shot cosine, on the test split."""
    from ftlab.data.prepare import load_prepared
    from ftlab.learning.tasks.biencoder import cosine_to_score, zero_shot_cosine

    cfg = config(dataset)
    task = cfg.task_type()
    splits, labels = load_prepared(cfg)
    train, test = splits["train"], splits["test"]
    name, trivial = task.trivial(train, test, labels)
    out = [(f"baseline:{name}", trivial, 0.0)]
    if task.name == "regression":
        start = time.perf_counter()
        cosine = zero_shot_cosine(cfg.model, list(test["text"]), list(test["text_pair"]))
        seconds = time.perf_counter() - start
        score = cosine_to_score(cosine, float(train["label"].min()), float(train["label"].max()))
        out.append(("baseline:zero_shot_cosine", task.predictions(test, [np.array([s]) for s in score], labels, {}), seconds))
    rows = []
    for method, predictions, seconds in out:
        metrics = {**task.test_metrics(predictions, labels), "trainable_params": 0, "train_seconds": 0.0,
                   "n_train": len(train), "n_test": len(test)}
        rows.append((row(dataset, cfg, method, metrics, inference_seconds=round(seconds, 1)), predictions))
    return rows


def tests(dataset: str, cells: dict[str, pd.DataFrame], rows: list[dict]) -> list[dict]:
    """The paired test of every trained cell against every baseline, and of bi against cross."""
    from ftlab.analysis.stats import paired_bootstrap

    cfg = config(dataset)
    task, labels = cfg.task_type(), json.loads((cfg.data.prepared_dir / "labels.json").read_text())
    scores = {name: task.example_scores(p, labels) for name, p in cells.items()}
    trained = [n for n in scores if not n.startswith("baseline:")]
    pairs = [(a, b) for a in trained for b in scores if b.startswith("baseline:")]
    pairs += [(f"{m} (bi)", f"{m} (cross)") for m in ("full", "lora") if {f"{m} (bi)", f"{m} (cross)"} <= set(scores)]
    out = []
    for a, b in pairs:
        t = paired_bootstrap(scores[a][None], scores[b][None], statistic=task.statistic,  # one seed
                             higher_is_better=task.primary.higher_is_better)
        out.append({"dataset": dataset, "a": a, "b": b, "metric": task.statistic.label, **t})
        log.info("%s: %s vs %s: %+.4f [%.4f, %.4f] p=%.4f %s", dataset, a, b, t["difference"], t["ci_low"],
                 t["ci_high"], t["p_value"], t["verdict"])
    return out


def markdown(results: dict) -> str:
    lines = ["# Pairs: cross-encoder vs bi-encoder vs the zero-shot cosine (issue 29)", "",
             "`python benchmarks/pairs.py`: the targets recipe of `benchmarks/params/tasks_<dataset>_targets.yaml` "
             "with `task.pair_encoding` cross or bi; test = the dataset's dev.tsv, never seen in training. One "
             "`ftlab train` process per cell, one thread, fp32. Bi-encoder full fine-tuning at lr 2e-5 "
             "(sentence-transformers' STS-B example), the cross-encoder at the recipe's (STS-B 1e-4, RTE 3e-5). "
             "Verdicts: the "
             "project's paired bootstrap (10,000 resamples of the test pairs, 95%) on the primary metric, "
             "Spearman re-ranked on every resample.", ""]
    if results.get("device"):
        lines += [f"Device: {results['device']}.", ""]
    for dataset in DATASETS:
        rs = [r for r in results["rows"] if r["dataset"] == dataset]
        if not rs:
            continue
        lines += [f"## {dataset} ({rs[0]['task']}), {rs[0]['n_train']} train / {rs[0]['n_test']} test", "",
                  f"| cell | {rs[0]['metric']} | other metrics | trainable | lr | steps (best) | train s | note |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rs:
            other = ", ".join(f"{k} {v:.4f}" for k, v in r["secondary"].items())
            value = "" if r["value"] is None else f"{r['value']:.4f}"
            steps = f"{r['steps']} ({r['best_step']})" if r.get("steps") else ""
            seconds = "" if not r.get("train_seconds") else f"{r['train_seconds']:.0f}"
            lines.append(f"| {r['method']} | {value} | {other} | {r['trainable_params'] or 0:,} | {r.get('lr', '')} "
                         f"| {steps} | {seconds} | {r.get('note', '')} |")
        lines += ["", "| A | B | A − B | 95% interval | p | verdict for A |", "|---|---|---|---|---|---|"]
        for t in (t for t in results["tests"] if t["dataset"] == dataset):
            lines.append(f"| {t['a']} | {t['b']} | {t['difference']:+.4f} | [{t['ci_low']:+.4f}, {t['ci_high']:+.4f}] "
                         f"| {'< 0.0001' if t['p_value'] < 1e-4 else format(t['p_value'], '.4f')} | **{t['verdict']}** |")
        lines.append("")
    return "\n".join(lines)


def device() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    return f"{cpu}, 2 cores shared with other jobs"


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="*", choices=DATASETS, default=DATASETS)
    parser.add_argument("--cells", nargs="*", choices=CELLS, default=DEFAULT_CELLS)
    parser.add_argument("--jobs", type=int, default=2, help="cells trained at once (each one thread)")
    args = parser.parse_args()
    (WORK / "logs").mkdir(parents=True, exist_ok=True)
    path = RESULTS / "pairs.json"
    for dataset in args.datasets:
        predictions: dict[str, pd.DataFrame] = {}
        fresh = []
        for r, p in baseline_cells(dataset):
            fresh.append(r)
            predictions[r["method"]] = p
        from ftlab.data.prepare import load_prepared

        cells = [tuple(c.split(":")) for c in args.cells]
        for encoding in sorted({e for _, e in cells}):  # prepared here, not raced by parallel cells
            load_prepared(config(dataset, encoding))
        with ThreadPoolExecutor(args.jobs) as pool:
            done = list(pool.map(lambda c, d=dataset: train_cell(d, *c), cells))
        for r, p in done:
            fresh.append(r)
            if p is not None:
                predictions[r["method"]] = p
        # cells trained earlier (their run directories) take part in the tests too
        for cell in CELLS:
            method, encoding = cell.split(":")
            if f"{method} ({encoding})" not in predictions and (WORK / dataset / f"{method}-{encoding}" / "metrics.json").is_file():
                r, p = saved_cell(dataset, method, encoding)
                fresh.append(r)
                predictions[r["method"]] = p
        fresh.sort(key=lambda r: CELLS.index(r["method"].replace(" (", ":").rstrip(")")) if "(" in r["method"] else -1)
        checked = tests(dataset, predictions, fresh)
        with open(WORK / "results.lock", "w") as lock:  # runs of other datasets may write meanwhile
            fcntl.flock(lock, fcntl.LOCK_EX)
            results = json.loads(path.read_text()) if path.is_file() else {"rows": [], "tests": []}
            results["device"] = device()
            results["rows"] = [r for r in results["rows"] if r["dataset"] != dataset] + fresh
            results["tests"] = [t for t in results["tests"] if t["dataset"] != dataset] + checked
            path.write_text(json.dumps(results, indent=2) + "\n")
            (RESULTS / "pairs.md").write_text(markdown(results) + "\n")


if __name__ == "__main__":
    main()
