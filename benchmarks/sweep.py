"""Methods × seeds × train sizes on one dataset, through the pipeline's own stages (the ftlab CLI).

    python benchmarks/sweep.py                                    # SST-2, benchmarks/params/sweep_sst2.yaml
    python benchmarks/sweep.py --params my_sweep.yaml --name mine --jobs 2

Runs prepare and validate, the search of every method, every cell's training and checks, then the
comparison, as separate ``ftlab`` processes, ``--jobs`` at a time with cores / jobs torch threads
each. Separate processes keep every cell seeded on its own (threads of one process would share
torch's global RNG) and keep a cell's speed independent of the others' thread counts; finished
cells are skipped, so an interrupted sweep continues where it stopped. Writes
``benchmarks/results/sweep_<name>.json`` (methods, seeds, train sizes, one object per cell and per
method × size) and copies the comparison report with its plots to ``benchmarks/results/sweep_<name>/``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def ftlab(params: Path, threads: int, *args: str) -> None:
    cmd = ["ftlab", *args, "-p", str(params), "-S", f"train.threads={threads}"]
    print("$", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def parallel(jobs: int, calls: list[tuple[str, ...]], run) -> None:
    with ThreadPoolExecutor(jobs) as pool:
        for future in [pool.submit(run, *call) for call in calls]:
            future.result()


def main() -> None:
    from ftlab.core import layout
    from ftlab.learning.config import load_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=ROOT / "benchmarks/params/sweep_sst2.yaml")
    parser.add_argument("--name", default="sst2")
    parser.add_argument("--jobs", type=int, default=2, help="cells trained at once")
    args = parser.parse_args()
    cfg = load_config(args.params)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    run = lambda *a: ftlab(args.params, threads, *a)  # noqa: E731

    start = time.perf_counter()
    run("prepare")
    run("validate")
    parallel(args.jobs, [("search", "-m", m) for m in cfg.methods
                         if not layout.search_file(cfg, m).is_file()], run)
    todo = [c for c in cfg.cells() if not (layout.run_dir(cfg, c) / "metrics.json").is_file()]
    parallel(args.jobs, [("train", "-m", c.method, "--seed", str(c.seed), "--train-size", str(c.train_size))
                         for c in todo], run)
    for c in cfg.cells():
        run("check", "-m", c.method, "--seed", str(c.seed), "--train-size", str(c.train_size))
    run("compare")
    wall = time.perf_counter() - start

    report_dir = ROOT / cfg.report.dir
    comparison = json.loads((report_dir / "comparison.json").read_text())
    result = {
        "methods": cfg.methods,
        "seeds": cfg.seeds,
        "train_sizes": cfg.train_sizes,
        "jobs": args.jobs,
        "wall_seconds_last_run": round(wall, 1),
        "recommendation": comparison["recommendation"]["text"],
        "by_size": comparison["by_size_text"],
        "crossings": comparison["crossings"],
        "search": {m: s["chosen"] for m, s in comparison["search"].items()},
        "cells": comparison["cells"],
        "summary": comparison["summary"],
    }
    (RESULTS / f"sweep_{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    out = RESULTS / f"sweep_{args.name}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for path in [*report_dir.glob("comparison.*"), *report_dir.glob("*.png")]:
        shutil.copy(path, out)
    print(f"{len(result['cells'])} cells in {wall:.0f} s\n{result['recommendation']}\n{result['by_size']}")


if __name__ == "__main__":
    main()
