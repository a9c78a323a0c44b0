"""Methods × seeds × train sizes on one dataset, through the real pipeline (the Prefect flow).

    python benchmarks/sweep.py                                    # SST-2, benchmarks/params/sweep_sst2.yaml
    python benchmarks/sweep.py --params my_sweep.yaml --name mine

Runs ``ftlab pipeline`` on the params file (finished cells are skipped, so an interrupted sweep
continues where it stopped), then writes ``benchmarks/results/sweep_<name>.json`` (methods, seeds,
train sizes, one object per cell and per method × size) and copies the comparison report with its
plots to ``benchmarks/results/sweep_<name>/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def main() -> None:
    from ftlab.config import load_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=ROOT / "benchmarks/params/sweep_sst2.yaml")
    parser.add_argument("--name", default="sst2")
    args = parser.parse_args()
    cfg = load_config(args.params)

    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ftlab.cli", "pipeline", "--params", str(args.params)], cwd=ROOT, check=True)
    wall = time.perf_counter() - start

    report_dir = ROOT / cfg.report.dir
    comparison = json.loads((report_dir / "comparison.json").read_text())
    result = {
        "methods": cfg.methods,
        "seeds": cfg.seeds,
        "train_sizes": cfg.train_sizes,
        "wall_seconds_last_run": round(wall, 1),
        "recommendation": comparison["recommendation"]["text"],
        "by_size": comparison["by_size_text"],
        "crossings": comparison["crossings"],
        "cells": comparison["cells"],
        "summary": comparison["summary"],
    }
    (RESULTS / f"sweep_{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    out = RESULTS / f"sweep_{args.name}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for path in report_dir.glob("comparison.*"):
        shutil.copy(path, out)
    for path in report_dir.glob("*.png"):
        shutil.copy(path, out)
    print(f"{len(result['cells'])} cells; {result['recommendation']}\n{result['by_size']}")


if __name__ == "__main__":
    main()
