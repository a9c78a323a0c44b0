"""Dropout's cost on MiniLM's activation shapes: eager, compiled (inductor's fused RNG), and none.

    python benchmarks/dropout.py [--repeats 50]

Its random masks (``aten::bernoulli_``) are 10-17% of a profiled training step on CPU
(mfu_profile.txt), so a cheaper dropout kernel was the lever to try before turning dropout off
(benchmarks/compile.py's no_dropout variant). Forward and backward of ``F.dropout(x, 0.1)`` on
hidden states (batch 32 x 20 and 40 tokens x 384) and attention probabilities (32 x 12 heads x
20 x 20); the three kinds take turns, and each keeps its fastest repeat (the machine is shared).
Writes benchmarks/results/dropout.json.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from throughput import RESULTS

SHAPES = [(32, 20, 384), (32, 40, 384), (32, 12, 20, 20)]


def kinds() -> dict:
    compiled = torch.compile(lambda x: F.dropout(x, 0.1, True), dynamic=True)
    return {"eager": lambda x: F.dropout(x, 0.1, True), "compiled": compiled, "none": lambda x: x * 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    fns = kinds()
    start = time.perf_counter()
    for shape in SHAPES:  # compile (one dynamic graph) and warm every kind up
        for fn in fns.values():
            fn(torch.randn(*shape, requires_grad=True)).backward(torch.randn(*shape))
    warmup = time.perf_counter() - start
    out = {}
    for shape in SHAPES:
        x, grad = torch.randn(*shape, requires_grad=True), torch.randn(*shape)
        best = dict.fromkeys(fns, float("inf"))
        for _ in range(args.repeats):
            for name, fn in fns.items():
                t = time.perf_counter()
                fn(x).backward(grad)
                best[name] = min(best[name], time.perf_counter() - t)
        out["x".join(map(str, shape))] = {f"{k}_ms": round(v * 1e3, 3) for k, v in best.items()} | {
            "compiled_vs_eager": round(best["compiled"] / best["eager"], 2)}
    result = {"op": "F.dropout(x, 0.1) forward + backward", "threads": torch.get_num_threads(),
              "compile_warmup_seconds": round(warmup, 1), "shapes": out, "device": "cpu"}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dropout.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
