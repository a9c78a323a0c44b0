"""The performance levers of issue 17 on the same SST-2 batches, eager ones interleaved in one process.

    python benchmarks/compile.py [--n-train 1024] [--cycles 4] [--epochs 3]

Every variant trains ftlab's full fine-tuning model (MiniLM, mean pooling, fused AdamW) on the same
1,024 SST-2 sentences in batches of 32, at the precision ftlab would use here. This machine is
shared and its speed drifts by up to 20% between minutes, so the eager levers are compared within
one process, one model and one optimizer, an epoch each in turn, for `--cycles` cycles (the order
rotates each cycle); a lever's speed-up is its epoch against the grouped epoch of the same cycle,
and the result is the median over cycles:

    grouped            ftlab's sampler, transformers' length grouping (sorted within megabatches of
                       up to 50 batches), batches padded to their longest row: the careful script's too
    sorted             the whole epoch sorted by length, batches in random order: less padding, but
                       one length per batch, which slowed learning (not kept in ftlab; see trainer.py)
    frozen_embeddings  grouped, the word-embedding table frozen (method_params.full.train_embeddings
                       false): no 47 MB gradient and no AdamW update of its 11.7M entries per step
    no_dropout         grouped, every dropout off (attention and hidden): the most any faster dropout
                       kernel could buy, since the random masks are 10-17% of a profiled step
    every_lever        sorted, frozen embeddings and no dropout together: the eager ceiling here,
                       whatever each lever costs in learning

Compilation keeps state per process, so these two run in their own processes, `--epochs` epochs
each (the first is the compile warm-up), against the cycle's median grouped epoch:

    sorted_bucketed    sorted, padded to multiples of 16 tokens: what static shapes cost in padding
    compiled_bucketed  torch.compile (inductor) on those 16-token buckets, one graph per shape

Reported per variant: epoch seconds, the steady-state epoch (median; for the separate processes the
fastest after the first), the speed-up against grouped, padded and real tokens, and MFU = 6 x
non-embedding parameters x real tokens/s of the steady epoch against the matmul peak of the run's
precision at MiniLM's shapes (benchmarks/mfu.py), the highest any process measured. A torch.profiler
pass over eager steps gives the share of matmuls: the most any lever outside the matmuls can buy is
1 / that share (Amdahl). Writes benchmarks/results/compile.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

import numpy as np
import torch

from mfu import matmul_peak
from throughput import RESULTS, epoch, load

EAGER = ["grouped", "sorted", "frozen_embeddings", "no_dropout", "every_lever"]
ON_GROUPED = ("grouped", "frozen_embeddings", "no_dropout")  # the rest train on the sorted epoch
SEPARATE = ["sorted_bucketed", "compiled_bucketed"]
BATCH = 32
BUCKET = 16


def sorted_order(lengths: list[int], seed: int) -> list[int]:
    """The epoch sorted by length (ties shuffled) and cut into batches, the batches in random order:
    the longest first, the short one last (the collation below cuts the stream again)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    order = order[np.argsort(-np.asarray(lengths)[order], kind="stable")]
    cut = [order[i : i + BATCH] for i in range(0, len(order), BATCH)]
    middle = len(cut) - 1 if len(cut[-1]) < BATCH else len(cut)
    return [int(i) for b in [0, *(rng.permutation(middle - 1) + 1), *range(middle, len(cut))] for i in cut[b]]


def batches(n_train: int, bucket: int | None, grouped: bool = False) -> tuple[list[dict], int]:
    """One epoch's training batches, from ftlab's sampler (``grouped``) or the whole epoch sorted,
    and their real (unpadded) tokens."""
    from ftlab.learning.config import load_config
    from ftlab.learning.modeling import load_tokenizer
    from ftlab.training.trainer import EpochSeededLengthSampler

    cfg = load_config()
    tok = load_tokenizer(cfg.model)
    df, _ = load(n_train)
    rows = [{**tok(t, truncation=True, max_length=128), "labels": y} for t, y in zip(df["sentence"], df["label"], strict=True)]
    lengths = [len(r["input_ids"]) for r in rows]
    order = list(EpochSeededLengthSampler(BATCH, lengths, seed=0)) if grouped else sorted_order(lengths, 0)
    collate = cfg.task_type().collator(tok, bucket)
    out = [collate([rows[i] for i in order[s : s + BATCH]]) for s in range(0, len(order), BATCH)]
    return out, sum(len(r["input_ids"]) for r in rows)


def full_model() -> torch.nn.Module:
    """ftlab's default model for SST-2 (MiniLM, mean pooling, a seeded head) in training mode."""
    from ftlab.learning.config import load_config

    torch.manual_seed(0)
    cfg = load_config()
    return cfg.task_type().build_model(cfg.model, ["0", "1"], None).train()


def cycle(n_train: int, cycles: int) -> dict:
    """The eager levers in turn on one model and optimizer: epoch seconds per variant, per cycle."""
    from ftlab.training.trainer import use_bf16

    bf16 = use_bf16("auto")
    model = full_model()
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)  # skips parameters without a grad
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    p_train = [m.p for m in dropouts]
    data = {"grouped": batches(n_train, None, grouped=True), "sorted": batches(n_train, None)}
    for batches_, _ in data.values():  # warm-up: allocator, thread pools, every batch shape once
        epoch(model, optim, batches_, bf16)
    seconds: dict[str, list[float]] = {v: [] for v in EAGER}
    for c in range(cycles):
        for variant in EAGER[c % len(EAGER):] + EAGER[: c % len(EAGER)]:
            for module, p in zip(dropouts, p_train, strict=True):  # BERT's attention reads its dropout's p
                module.p = 0.0 if variant in ("no_dropout", "every_lever") else p
            model.get_input_embeddings().requires_grad_(variant not in ("frozen_embeddings", "every_lever"))
            order = "grouped" if variant in ON_GROUPED else "sorted"
            seconds[variant].append(round(epoch(model, optim, data[order][0], bf16), 2))
    peak = max(matmul_peak(torch.bfloat16 if bf16 else torch.float32).values())  # this process's machine speed
    padded = {order: sum(b["input_ids"].numel() for b in batches_) for order, (batches_, _) in data.items()}
    return {v: {"epoch_seconds": seconds[v], "peak_gflops": peak, "real_tokens": data["grouped"][1],
                "padded_tokens": padded["grouped" if v in ON_GROUPED else "sorted"],
                "steps_per_epoch": len(data["grouped"][0]), "precision": "bf16" if bf16 else "fp32",
                "threads": torch.get_num_threads()} for v in EAGER}


def run_variant(variant: str, n_train: int, epochs: int) -> dict:
    """``epochs`` epochs of a bucketed variant, eager or compiled, in this process."""
    from ftlab.training.trainer import use_bf16

    bf16 = use_bf16("auto")
    model = full_model()
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    data, real_tokens = batches(n_train, BUCKET)
    forward = model
    if variant == "compiled_bucketed":
        import torch._dynamo as dynamo

        dynamo.config.automatic_dynamic_shapes = False  # as ftlab.training.train: one graph per bucket
        dynamo.config.recompile_limit = 64
        forward = torch.compile(model)
    seconds = [round(epoch(forward, optim, data, bf16), 2) for _ in range(epochs)]
    peak = max(matmul_peak(torch.bfloat16 if bf16 else torch.float32).values())
    return {"epoch_seconds": seconds, "peak_gflops": peak, "real_tokens": real_tokens,
            "padded_tokens": sum(b["input_ids"].numel() for b in data), "steps_per_epoch": len(data),
            "precision": "bf16" if bf16 else "fp32", "threads": torch.get_num_threads()}


def matmul_share(n_train: int) -> float:
    """Share of matmul kernels (mm, addmm, bmm) in the self time of ftlab's eager steps."""
    from torch.profiler import ProfilerActivity, profile

    from ftlab.training.trainer import use_bf16

    model = full_model()
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    data, _ = batches(min(n_train, 16 * BATCH), None)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        epoch(model, optim, data, use_bf16("auto"))
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::addmm", "aten::bmm")) / total


def non_embedding_params() -> int:
    from ftlab.learning.config import load_config
    from ftlab.learning.modeling import model_parts

    cfg = load_config()
    parts = model_parts(cfg.task_type().build_model(cfg.model, ["0", "1"], None))
    return sum(p.numel() for layer in parts.layers for _, p in layer) + sum(p.numel() for _, p in parts.head)


def summarise(runs: dict[str, dict]) -> float:
    """Steady epoch, speed-up against grouped and MFU per variant (see the module docstring); the peak."""
    peak = max(r.pop("peak_gflops") for r in runs.values())  # the conservative one
    flops_per_token = 6 * non_embedding_params()
    grouped = runs["grouped"]["epoch_seconds"]
    for name, r in runs.items():
        if name in EAGER:
            r["steady_epoch_seconds"] = statistics.median(r["epoch_seconds"])
            r["speedup_vs_grouped_by_cycle"] = [round(g / t, 3) for g, t in zip(grouped, r["epoch_seconds"], strict=True)]
            r["speedup_vs_grouped"] = round(statistics.median(r["speedup_vs_grouped_by_cycle"]), 3)
        else:
            r["first_epoch_seconds"] = r["epoch_seconds"][0]
            r["steady_epoch_seconds"] = min(r["epoch_seconds"][1:])
            r["speedup_vs_grouped"] = round(statistics.median(grouped) / r["steady_epoch_seconds"], 3)
        r["mfu"] = round(flops_per_token * r["real_tokens"] / r["steady_epoch_seconds"] / 1e9 / peak, 4)
        r["padding_overhead"] = round(r["padded_tokens"] / r["real_tokens"] - 1, 4)
    return peak


def child(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.split("RESULT ", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=1024)
    parser.add_argument("--cycles", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3, help="of each separate process, the first compiling")
    parser.add_argument("--separate", nargs="*", choices=SEPARATE, default=SEPARATE)
    parser.add_argument("--child", choices=["cycle", *SEPARATE], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch is warm-up, the steady state comes after")
    if args.child:  # child process: printed as JSON
        result = cycle(args.n_train, args.cycles) if args.child == "cycle" else run_variant(args.child, args.n_train, args.epochs)
        print("RESULT " + json.dumps(result))
        return
    n = ["--n-train", str(args.n_train)]
    runs = child(["--child", "cycle", "--cycles", str(args.cycles), *n])
    for variant in args.separate:
        runs[variant] = child(["--child", variant, "--epochs", str(args.epochs), *n])
    for variant, r in runs.items():
        print(variant, r["epoch_seconds"], flush=True)
    peak = summarise(runs)
    share = matmul_share(args.n_train)
    out = {"precision": runs["grouped"]["precision"], "matmul_peak_gflops": round(peak, 2),
           "matmul_share_of_eager_step": round(share, 4), "amdahl_bound_outside_matmuls": round(1 / share, 3),
           "n_train": args.n_train, "cycles": args.cycles, "epochs": args.epochs, "bucket": BUCKET,
           "batch_size": BATCH, "device": "cpu", "variants": runs}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "compile.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
