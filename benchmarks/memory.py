"""Peak memory of every method at the same batch size and data, and its ratio to full fine-tuning.

    python benchmarks/memory.py [--steps 30] [--name memory] [--methods lora ...]

Each method trains `--steps` steps on the SST-2 benchmark data (batch 32, no evaluation during
training) in its own process; peak memory is the process RSS sampled during training on CPU, or
the peak allocated CUDA memory on a GPU.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from methods import RESULTS, run_method

PARAMS = Path(__file__).parent / "params/sst2.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--name", default="memory", help="results file stem (e.g. memory_gpu)")
    parser.add_argument("--methods", nargs="*", help="default: every registered method (full always runs: the reference)")
    args = parser.parse_args()

    from ftlab.learning.config import load_config
    from ftlab.learning.methods import METHODS

    cfg = load_config(PARAMS)
    overrides = [f"train.max_steps={args.steps}", "train.eval_steps=1000000"]
    rows = {}
    for method in ["full", *[m for m in args.methods or METHODS if m not in ("adapter", "full")]]:
        metrics = run_method(PARAMS, method, cfg.train.output_dir / "memory" / method, overrides)
        if "error" not in metrics:
            rows[method] = {"peak_memory_mb": metrics["peak_memory_mb"], "memory_kind": metrics["memory_kind"],
                            "trainable_params": metrics["trainable_params"]}
    full = rows["full"]["peak_memory_mb"]
    for row in rows.values():
        row["ratio_to_full"] = round(row["peak_memory_mb"] / full, 3)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
