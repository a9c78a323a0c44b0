"""The loop on a real domain shift: an SST-2 model meets Reddit comments, learns from labelled
batches of them, and each retrained model is promoted only if the gate lets it.

    python benchmarks/loop_reddit.py                     # two batches of 1,500 rows (~15 min on 2 cores)
    python benchmarks/loop_reddit.py --batches 1 --rows 1000

Steps, each timed, all through ftlab's stage functions (what ``ftlab <command>`` runs):

1. ``train v1``: prepare, train (MiniLM, full fine-tuning, one epoch), compare and promote on 3,000
   SST-2 training phrases (validation carved from them, test = 1,000 of SST-2's dev sentences).
2. ``monitor``: the first Reddit batch (labelled, from ``reddit_sentiment/batch.tsv``) against v1.
3. Per batch: ``ingest``, then ``retrain`` (prepare, train, compare, promote through the gate).

Every model is scored on Reddit's held-out ``test.tsv`` (2,955 comments no step trains on) and on the
SST-2 test slice (the gate's per-slice numbers). Writes ``benchmarks/results/loop_reddit.json`` and
``loop_reddit.md``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from ftlab.serving.promote import model_dir  # noqa: E402
from loop_common import (  # noqa: E402
    DATA,
    fresh,
    gate_summary,
    loop_config,
    monitor_summary,
    retrain,
    serving_version,
    stages,
    timed,
    write_results,
)
from overhead import device  # noqa: E402

log = logging.getLogger("loop_reddit")
WORK = HERE / ".work" / "loop_reddit"


def config(root: Path) -> Any:
    return loop_config(root, {
        "data.source": {"train": str(DATA / "sst2/train.tsv"), "test": str(DATA / "sst2/dev.tsv")},
        "data.quoting": "none", "task.text_column": "sentence", "data.max_train_samples": 3000,
        "data.max_validation_samples": 500, "data.max_test_samples": 1000, "train.eval_steps": 50})


def batch_files(rows: int, count: int) -> list[Path]:
    """``count`` disjoint batches of ``rows`` lines of batch.tsv (a seeded draw), raw TSV like the source."""
    header, *lines = (DATA / "reddit_sentiment/batch.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    order = np.random.default_rng(0).permutation(len(lines))
    files = []
    for i in range(count):
        path = WORK / f"reddit-{i + 1}.tsv"
        path.write_text(header + "".join(lines[j] for j in sorted(order[i * rows:(i + 1) * rows])), encoding="utf-8")
        files.append(path)
    return files


def reddit_accuracy(cfg: Any) -> float:
    """Accuracy of the serving model on Reddit's held-out test.tsv."""
    from ftlab.serving.predict import predict_file

    out = WORK / "reddit_test.predictions.csv"
    predict_file(model_dir(cfg), DATA / "reddit_sentiment/test.tsv", out, "sentence")
    import pandas as pd

    scored = pd.read_csv(out, dtype={"prediction": str, "label": str})
    return float((scored["prediction"] == scored["label"]).mean())


def serving_row(cfg: Any, decision: dict | None) -> dict:
    return {"serving_version": serving_version(cfg), "reddit_test_accuracy": round(reddit_accuracy(cfg), 4),
            "gate": gate_summary(decision)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--rows", type=int, default=1500)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = config(fresh(WORK))
    files = batch_files(args.rows, args.batches)
    rounds: list[dict] = []
    steps: dict[str, float] = {}
    timed(steps, "train v1 (prepare, train, compare, promote)", retrain, cfg)
    rounds.append({"after": "v1: SST-2 only", "steps": steps, **serving_row(cfg, None)})
    steps = {}
    drift = timed(steps, "monitor batch 1", stages.monitor, cfg, files[0])
    rounds[0]["monitor"] = monitor_summary(drift)
    for i, path in enumerate(files, start=1):
        steps = steps if i == 1 else {}
        timed(steps, f"ingest batch {i}", stages.ingest, cfg, path, f"reddit-{i}")
        meta = timed(steps, f"retrain with batch {i} (prepare, train, compare, gated promote)", retrain, cfg)
        rounds.append({"after": f"batch {i} ({args.rows} Reddit rows) ingested", "steps": steps,
                       **serving_row(cfg, meta["promotion"])})
    result = {"device": device(), "threads": os.cpu_count(), "model": "all-MiniLM-L6-v2, full fine-tuning, 1 epoch",
              "source": "SST-2: 3,000 train phrases, 500 validation, 1,000 dev sentences as test",
              "batch_rows": args.rows, "reddit_test_rows": 2955, "rounds": rounds}
    write_results("loop_reddit", result, markdown(result))


def markdown(result: dict) -> str:
    lines = [f"# The loop on Reddit comments ({result['device']})", "",
             f"{result['model']}; source {result['source']}; batches of {result['batch_rows']} labelled Reddit "
             f"comments. Reddit test: {result['reddit_test_rows']} held-out comments no step trains on.", ""]
    first = result["rounds"][0]["monitor"]
    lines += [f"Monitor of batch 1 against v1: **{first['verdict']}** on {first['rows']} rows: "
              + ", ".join(f"{k} {s['score']} (threshold {s['threshold']}{', drifted' if s['drifted'] else ''})"
                          for k, s in first["signals"].items()), "",
              "| after | serving | Reddit test acc. | gate | SST-2 slice (challenger vs champion) | Reddit slices | steps (s) |",
              "|---|---|---:|---|---|---|---|"]
    for r in result["rounds"]:
        gate = r["gate"]
        found = (gate or {}).get("comparisons") or {}
        source = found.get("source")
        sst = "" if source is None else f"{source['challenger']:.4f} vs {source['champion']:.4f} (p={source['p_value']:.3g})"
        reddit = "; ".join(f"{k}: {c['challenger']:.4f} vs {c['champion']:.4f}" for k, c in found.items()
                           if k not in ("overall", "source"))
        decision = "" if gate is None else f"{'promoted' if gate['promoted'] else 'refused'} ({gate['gate']})"
        steps = "; ".join(f"{k} {v}" for k, v in r["steps"].items())
        lines.append(f"| {r['after']} | v{r['serving_version']} | {r['reddit_test_accuracy']:.4f} | {decision} | {sst} | {reddit} | {steps} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
