"""Time of one AdamW step over MiniLM-shaped parameters: the default per-tensor loop, foreach, fused.

    python benchmarks/adamw.py          -> benchmarks/results/adamw.json

The profile of full fine-tuning (mfu_profile.txt) put the optimizer at 17% of a CPU step, over all
22.7M parameters; this isolates that cost, alternating the variants in one process.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"
# word embeddings, 6 layers of q/k/v/o 384x384 and the 1536-wide MLP, biases and LayerNorms
SHAPES = [(30522, 384)] + [(384, 384)] * 24 + [(1536, 384), (384, 1536)] * 6 + [(384,)] * 60
VARIANTS = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def step_seconds(options: dict, steps: int = 10) -> float:
    params = [torch.nn.Parameter(torch.randn(s) * 0.02) for s in SHAPES]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    groups = [{"params": params[:40], "lr": 1e-4}, {"params": params[40:], "lr": 5e-5}]  # as LLRD has several
    optimizer = torch.optim.AdamW(groups, weight_decay=0.01, **options)
    optimizer.step()  # state allocation is not a step
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(3):
        for variant, options in VARIANTS.items():
            times[variant].append(step_seconds(options))
    ms = {v: round(1000 * statistics.median(t), 1) for v, t in times.items()}
    result = {"ms_per_step": ms, "speedup_fused_vs_default": round(ms["default"] / ms["fused"], 2),
              "threads": torch.get_num_threads(), "torch": torch.__version__}
    (RESULTS / "adamw.json").write_text(json.dumps(result, indent=2) + "\n")
    print(result)


if __name__ == "__main__":
    main()
