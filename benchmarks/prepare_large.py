"""Peak memory and time of `prepare` on a large CSV file (issue 26, item 10).

    python benchmarks/prepare_large.py [--gb 1.0] [--keep]

Generates a classification CSV of about ``--gb`` GB under benchmarks/.work/ (git-ignored; reused
when present with the same size): review-like texts of 40-160 characters, one in eight quoted with
a comma inside (as pandas writes them), three classes of 60/30/10%. Then runs `prepare` on it in a
process of its own, once with every row and once with `data.max_train_samples: 1000`, and records
wall time and the process's peak RSS (``ru_maxrss`` of the child, from ``wait4``). The prepared
data is deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = Path(__file__).parent / ".work" / "prepare_large"
RESULTS = Path(__file__).parent / "results"
WORDS = ("the movie was a plot and acting film story really quite it great awful wonderful boring lovely "
         "terrible superb dreadful fine long short cast music scene ending").split()


def generate(path: Path, gb: float) -> dict:
    """A CSV of about ``gb`` GB; returns its size and row count (cached in a sidecar JSON)."""
    sidecar = path.with_suffix(".json")
    if path.exists() and sidecar.exists() and json.loads(sidecar.read_text())["target_gb"] == gb:
        return json.loads(sidecar.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    target, rows, size = gb * 1e9, 0, 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("text,label\n")
        while size < target:
            block = []
            for _ in range(10_000):
                text = " ".join(rng.choices(WORDS, k=rng.randint(8, 28))) + f" {rows}"
                if rows % 8 == 0:
                    text = f'"{text}, she said ""twice"""'
                label = "pos" if rng.random() < 0.6 else "neg" if rng.random() < 0.75 else "neutral"
                block.append(f"{text},{label}\n")
                rows += 1
            chunk = "".join(block)
            f.write(chunk)
            size += len(chunk.encode())
    info = {"target_gb": gb, "bytes": path.stat().st_size, "rows": rows}
    sidecar.write_text(json.dumps(info))
    return info


def run_prepare(data: Path, out: Path, max_train: int | None) -> dict:
    """`prepare` in its own process: wall seconds, peak RSS (MB), the rows written, its last log lines."""
    overrides = {"data.source": str(data), "data.prepared_dir": str(out)}
    if max_train:
        overrides["data.max_train_samples"] = max_train
    script = ("import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stderr, "
              "format='%(asctime)s %(message)s')\n"
              "from ftlab.learning.config import load_config; from ftlab.data.prepare import prepare\n"
              f"prepare(load_config(None, {overrides!r}))\n")
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stderr is not None
    log = proc.stderr.read().splitlines()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"prepare failed ({status}):\n" + "\n".join(log[-20:]))
    meta = json.loads((out / "meta.json").read_text())
    return {"max_train_samples": max_train, "seconds": round(seconds, 1),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024),
            "rows": meta["rows"], "log_tail": log[-4:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--keep", action="store_true", help="keep the prepared data under benchmarks/.work/")
    args = parser.parse_args()
    data = WORK / f"reviews_{args.gb:g}gb.csv"
    started = time.perf_counter()
    info = generate(data, args.gb)
    print(f"data: {info['bytes'] / 1e9:.2f} GB, {info['rows']:,} rows ({time.perf_counter() - started:.0f} s)")
    runs = []
    for max_train in (None, 1000):
        out = WORK / f"prepared_{max_train or 'all'}"
        run = run_prepare(data, out, max_train)
        runs.append(run)
        print(json.dumps({k: v for k, v in run.items() if k != "log_tail"}))
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    result = {"file": {"bytes": info["bytes"], "rows": info["rows"]}, "runs": runs,
              "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "python": platform.python_version()}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "prepare_large.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"`prepare` on a {info['bytes'] / 1e9:.2f} GB CSV ({info['rows']:,} rows), each in its own process:", "",
             "| data.max_train_samples | wall time | CPU time | peak RSS | rows train / validation / test |", "|---|---|---|---|---|"]
    for run in runs:
        rows = " / ".join(f"{run['rows'][s]:,}" for s in ("train", "validation", "test"))
        lines.append(f"| {run['max_train_samples'] or 'all'} | {run['seconds']:.0f} s | {run['cpu_seconds']:.0f} s "
                     f"| {run['peak_rss_mb']:,} MB | {rows} |")
    (RESULTS / "prepare_large.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
