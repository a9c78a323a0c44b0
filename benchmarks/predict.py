"""Batch inference: `ftlab predict` against what a user would otherwise write, on the same export.

    python benchmarks/predict.py [--n 10000] [--batch-size 128] [--pairs 2]

The model: MiniLM with mean pooling, LoRA trained briefly on SST-2 (``--train-steps``) and promoted
by ftlab, so it exports as a sentence-transformers directory (merged LoRA, Dense head). The texts:
``--n`` SST-2 sentences from ../shared/data/sst2 in a Parquet file. Both sides run end to end from
the file to a scored file, in their own process, alternating ``--pairs`` times (the machine is
shared and noisy); the result is each side's median rows/s and their ratio.

    ftlab      ftlab.serving.predict.predict_file (what `ftlab predict` runs): chunked reading, length-sorted
               batches, bf16 autocast where native (train.precision auto), atomic output
    baseline   SentenceTransformer(dir).encode(texts, batch_size) (sentence-transformers also sorts
               by length) + softmax over the Dense head's logits, written with pandas

Writes benchmarks/results/predict.json with ``ratio`` (ftlab rows/s / baseline rows/s) and
``identical_predictions`` (every argmax the same).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

SST2 = Path(__file__).resolve().parents[2] / "shared/data/sst2"
RESULTS = Path(__file__).parent / "results"


def promote_model(work: Path, train_steps: int) -> Path:
    """A briefly trained MiniLM + LoRA (mean pooling), promoted by ftlab: a sentence-transformers export."""
    from ftlab import stages
    from ftlab.learning.config import load_config

    cfg = load_config(None, {
        "data.source": str(SST2 / "dev.tsv"), "data.text_column": "sentence", "data.max_train_samples": 2000,
        "data.prepared_dir": str(work / "data"), "methods": ["lora"], "train.max_steps": train_steps,
        "train.eval_steps": train_steps, "train.checkpoint_dir": None, "train.output_dir": str(work / "runs"),
        "report.dir": str(work / "reports"), "promote.dir": str(work / "models")})
    stages.prepare(cfg)
    stages.train(cfg, "lora")
    stages.compare(cfg)
    meta = stages.promote(cfg)
    assert meta["layout"] == "sentence-transformers", meta
    return work / "models" / cfg.promote.name


def run_side(side: str, model: Path, data: Path, out: Path, batch_size: int) -> dict:
    """One side, from the input file to the scored output file; seconds and the argmax per row."""
    start = time.perf_counter()
    if side == "ftlab":
        from ftlab.serving.predict import predict_file

        predict_file(model, data, out, batch_size=batch_size)
        labels = json.loads((model / "ftlab.json").read_text())["labels"]
        seconds = time.perf_counter() - start
        argmax = pd.read_parquet(out, columns=["prediction"])["prediction"].map(labels.index).tolist()
    else:
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(str(model), device="cuda" if _cuda() else "cpu")
        df = pd.read_parquet(data)
        probs = st.encode(df["sentence"].tolist(), batch_size=batch_size, convert_to_tensor=True).softmax(-1).cpu().numpy()
        names = st[0].auto_model.config.id2label
        df["prediction"] = [names[int(i)] for i in probs.argmax(-1)]
        for i in range(probs.shape[1]):
            df[f"prob_{names[i]}"] = probs[:, i]
        df.to_parquet(out, index=False)
        seconds = time.perf_counter() - start
        argmax = probs.argmax(-1).tolist()
    return {"seconds": seconds, "argmax": argmax}


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--name", default="predict")
    parser.add_argument("--side", help=argparse.SUPPRESS)  # internal: one side in a child process
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        out = Path(args.data).with_name(f"out-{args.side}.parquet")
        print(json.dumps(run_side(args.side, Path(args.model), Path(args.data), out, args.batch_size)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = promote_model(work, args.train_steps)
        texts = pd.read_csv(SST2 / "train.tsv", sep="\t", quoting=3).sample(n=args.n, random_state=1)
        texts.to_parquet(work / "texts.parquet", index=False)
        runs: dict[str, list[dict]] = {"ftlab": [], "baseline": []}
        for _ in range(args.pairs):
            for side in runs:
                done = subprocess.run([sys.executable, __file__, "--side", side, "--model", str(model),
                                       "--data", str(work / "texts.parquet"), "--batch-size", str(args.batch_size)],
                                      capture_output=True, text=True, check=True)
                runs[side].append(json.loads(done.stdout.splitlines()[-1]))
    rate = {side: statistics.median(args.n / r["seconds"] for r in rs) for side, rs in runs.items()}
    same = [a == b for a, b in zip(runs["ftlab"][0]["argmax"], runs["baseline"][0]["argmax"], strict=True)]
    result = {
        "ratio": round(rate["ftlab"] / rate["baseline"], 3),
        "identical_predictions": all(same),
        "agreement": sum(same) / len(same),
        "rows_per_second": {k: round(v, 1) for k, v in rate.items()},
        "seconds": {k: [round(r["seconds"], 2) for r in rs] for k, rs in runs.items()},
        "n_texts": args.n, "batch_size": args.batch_size, "pairs": args.pairs,
        "model": "all-MiniLM-L6-v2, mean pooling, LoRA merged (sentence-transformers export)",
        "device": "cuda" if _cuda() else f"cpu ({os.cpu_count()} cores)", "machine": platform.machine(),
        "note": "one run on a machine shared with other work: wall times are upper bounds; both sides end to end "
                "(model load, reading the Parquet file, scoring, writing the scored file)",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
