"""Accuracy and cost of every method on one dataset: each method trains in its own process.

    python benchmarks/methods.py --params benchmarks/params/sst2.yaml --name sst2
    python benchmarks/methods.py --params benchmarks/params/sst2.yaml --name sst2_cls \
        --methods full lora --set model.pooling=cls

Writes benchmarks/results/methods_<name>.json (one object per method) and a markdown table.
A separate process per method keeps the peak-memory figure of one method free of the others.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
KEYS = ["method", "accuracy", "macro_f1", "trainable_params", "total_params", "trainable_percent",
        "train_seconds", "train_samples_per_second", "eval_latency_ms_per_sample", "peak_memory_mb",
        "artifact_bytes", "steps", "best_step", "n_train", "n_test", "seed", "device", "threads"]


def main() -> None:
    from ftlab.learning.config import load_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, required=True)
    parser.add_argument("--name", required=True, help="results go to methods_<name>.json/.md")
    parser.add_argument("--methods", nargs="*", help="default: every registered method")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE, as ftlab -S")
    args = parser.parse_args()

    from ftlab.learning.methods import METHODS

    cfg = load_config(args.params)
    rows = []
    for method in args.methods or [m for m in METHODS if m != "adapter"]:
        metrics = run_method(args.params, method, cfg.train.output_dir / args.name / method, args.overrides)
        rows.append({k: metrics[k] for k in KEYS} if "error" not in metrics else metrics)

    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"methods_{args.name}.json"
    if path.is_file():  # re-running some methods keeps the others' rows, in registry order
        fresh = {r["method"] for r in rows}
        rows += [r for r in json.loads(path.read_text()) if r["method"] not in fresh]
        rows.sort(key=lambda r: list(METHODS).index(r["method"]))
    path.write_text(json.dumps(rows, indent=2) + "\n")
    (RESULTS / f"methods_{args.name}.md").write_text(table(rows, args) + "\n")


def run_method(params: Path, method: str, out: Path, overrides: list[str]) -> dict:
    """Train one method in a fresh ``ftlab train`` process; its metrics, or {method, error}."""
    cmd = ["ftlab", "train", "-m", method, "-p", str(params), "--out", str(out)]
    cmd += [f"-S{o}" for o in overrides]
    print("$", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
        return {"method": method, "error": (done.stdout + done.stderr).strip().splitlines()[-1]}
    from ftlab.core.record import read_record

    metrics = read_record(out).table_row()
    print(f"  accuracy {metrics['accuracy']:.4f}  {metrics['train_seconds']:.0f}s", flush=True)
    return metrics


def table(rows: list[dict], args) -> str:
    lines = [
        f"# Methods on `{args.name}`",
        "",
        f"`python benchmarks/methods.py --params {args.params} --name {args.name}"
        + "".join(f" --set {o}" for o in args.overrides) + "`",
        "",
        "| method | accuracy | macro-F1 | trainable | train s | samples/s | peak MB | artifact MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | error: {r['error']} | | | | | | |")
            continue
        lines.append(
            f"| {r['method']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {r['trainable_percent']:.3g}% "
            f"({r['trainable_params']:,}) | {r['train_seconds']:.0f} | {r['train_samples_per_second']:.0f} "
            f"| {r['peak_memory_mb']:.0f} | {r['artifact_bytes'] / 2**20:.2f} |"
        )
    first = next((r for r in rows if "error" not in r), None)
    if first:
        lines += ["", f"n_train={first['n_train']}, n_test={first['n_test']}, seed={first['seed']}, "
                  f"device={first['device']}, threads={first['threads']}"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
