"""The performance levers of issue 17, one training loop each, on the same SST-2 batches.

    python benchmarks/compile.py [--n-train 1024] [--epochs 2]

Every variant trains ftlab's full fine-tuning model (MiniLM, mean pooling, fused AdamW) on the same
1,024 SST-2 sentences in batches of 32 for `--epochs` epochs, in its own process (compilation state
and thread pools do not leak between variants), at the precision ftlab would use here:

    grouped            ftlab's sampler, transformers' length grouping (sorted within megabatches of
                       up to 50 batches), batches padded to their longest row: the careful script's too
    sorted             the whole epoch sorted by length, batches in random order: less padding, but
                       one length per batch, which slowed learning (not kept in ftlab; see trainer.py)
    sorted_bucketed    sorted, padded to multiples of 16 tokens: what static shapes cost in padding
    compiled_bucketed  torch.compile (inductor) on those 16-token buckets, one graph per shape
    frozen_embeddings  sorted, the word-embedding table frozen (method_params.full.train_embeddings false)

Reported per variant: the first epoch's seconds (compile warm-up included), the last epoch's
(steady state), padded and real tokens, and MFU = 6 x non-embedding parameters x real tokens/s of
the last epoch against the matmul peak of the run's precision at MiniLM's shapes (benchmarks/mfu.py).
A torch.profiler pass over eager steps gives the share of matmuls: the most any lever outside the
matmuls can buy is 1 / that share (Amdahl). Writes benchmarks/results/compile.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import torch

from mfu import matmul_peak
from throughput import RESULTS, load

VARIANTS = ["grouped", "sorted", "sorted_bucketed", "compiled_bucketed", "frozen_embeddings"]
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
    from ftlab.config import load_config
    from ftlab.modeling import load_tokenizer
    from ftlab.trainer import EpochSeededLengthSampler

    cfg = load_config()
    tok = load_tokenizer(cfg.model)
    df, _ = load(n_train)
    rows = [{**tok(t, truncation=True, max_length=128), "labels": y} for t, y in zip(df["sentence"], df["label"], strict=True)]
    lengths = [len(r["input_ids"]) for r in rows]
    order = list(EpochSeededLengthSampler(BATCH, lengths, seed=0)) if grouped else sorted_order(lengths, 0)
    collate = cfg.task_type().collator(tok, bucket)
    out = [collate([rows[i] for i in order[s : s + BATCH]]) for s in range(0, len(order), BATCH)]
    return out, sum(len(r["input_ids"]) for r in rows)


def run_variant(variant: str, n_train: int, epochs: int) -> dict:
    """Train ``epochs`` epochs of ``variant``; seconds per epoch and tokens."""
    from ftlab.config import load_config
    from ftlab.methods import get_method
    from ftlab.trainer import use_bf16

    cfg = load_config()
    torch.manual_seed(0)
    method = get_method("full")
    params = method.Params(train_embeddings=variant != "frozen_embeddings")
    model = method.prepare(cfg.task_type().build_model(cfg.model, ["0", "1"], None), params).train()
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)
    bf16 = use_bf16("auto")
    data, real_tokens = batches(n_train, BUCKET if "bucketed" in variant else None, grouped=variant == "grouped")
    if variant == "compiled_bucketed":
        import torch._dynamo as dynamo

        dynamo.config.automatic_dynamic_shapes = False  # as ftlab.train: one graph per bucket
        dynamo.config.recompile_limit = 64
        forward = torch.compile(model)
    else:
        forward = model
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        for batch in data:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = forward(**batch).loss
            loss.backward()
            optim.step()
            optim.zero_grad()
        seconds.append(time.perf_counter() - start)
    return {"epoch_seconds": [round(s, 2) for s in seconds], "real_tokens": real_tokens,
            "padded_tokens": sum(b["input_ids"].numel() for b in data), "steps_per_epoch": len(data),
            "precision": "bf16" if bf16 else "fp32", "threads": torch.get_num_threads()}


def matmul_share(n_train: int) -> float:
    """Share of matmul kernels (mm, addmm, bmm) in the self time of ftlab's eager steps."""
    from torch.profiler import ProfilerActivity, profile

    from ftlab.config import load_config
    from ftlab.trainer import use_bf16

    cfg = load_config()
    model = cfg.task_type().build_model(cfg.model, ["0", "1"], None).train()
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    data, _ = batches(min(n_train, 16 * BATCH), None)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in data:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16("auto")):
                loss = model(**batch).loss
            loss.backward()
            optim.step()
            optim.zero_grad()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::addmm", "aten::bmm")) / total


def non_embedding_params() -> int:
    from ftlab.config import load_config
    from ftlab.modeling import model_parts

    cfg = load_config()
    parts = model_parts(cfg.task_type().build_model(cfg.model, ["0", "1"], None))
    return sum(p.numel() for layer in parts.layers for _, p in layer) + sum(p.numel() for _, p in parts.head)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=VARIANTS)
    args = parser.parse_args()
    if args.variant:  # child process: one variant, printed as JSON
        print("RESULT " + json.dumps(run_variant(args.variant, args.n_train, args.epochs)))
        return
    runs = {}
    for variant in args.variants:
        done = subprocess.run([sys.executable, __file__, "--variant", variant, "--n-train", str(args.n_train),
                               "--epochs", str(args.epochs)], capture_output=True, text=True, check=True)
        runs[variant] = json.loads(done.stdout.split("RESULT ", 1)[1])
        print(variant, runs[variant], flush=True)
    precision = runs["sorted"]["precision"]
    peak = max(matmul_peak(torch.bfloat16 if precision == "bf16" else torch.float32).values())
    flops_per_token = 6 * non_embedding_params()
    eager_steady = runs["grouped"]["epoch_seconds"][-1]
    for r in runs.values():
        steady = r["epoch_seconds"][-1]
        r["mfu"] = round(flops_per_token * r["real_tokens"] / steady / 1e9 / peak, 4)
        r["speedup_vs_grouped"] = round(eager_steady / steady, 3)
        r["padding_overhead"] = round(r["padded_tokens"] / r["real_tokens"] - 1, 4)
    share = matmul_share(args.n_train)
    out = {"precision": precision, "matmul_peak_gflops": round(peak, 2), "matmul_share_of_eager_step": round(share, 4),
           "amdahl_bound_outside_matmuls": round(1 / share, 3), "n_train": args.n_train, "epochs": args.epochs,
           "bucket": BUCKET, "batch_size": BATCH, "device": "cpu", "variants": runs}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "compile.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
