"""The monitor's signals on real shift, and their false-alarm rate on fresh samples of the training
distribution: where its default thresholds come from.

    python benchmarks/monitor.py                 # both models, 30 resamples each (~15 min on 2 cores)
    python benchmarks/monitor.py --resamples 5   # a quick look

Two promoted models, each trained here with ftlab's stages (MiniLM, full fine-tuning, one epoch):
- ``sst2``: 4,000 SST-2 training phrases. SST-2's ``train.tsv`` is split in two by a seeded
  shuffle: training draws from one half only; the other half is the fresh in-distribution data.
- ``demo``: the built-in demo reviews (``make run``'s default); fresh demo data is generated with
  other seeds.

For each model, ``--resamples`` batches of ``--rows`` fresh in-distribution rows (labelled) are
monitored against the model's reference, as ``ftlab monitor`` would: every one of them should be
``ok``. Then real shifts, never trained on: Reddit comments (``../shared/data/reddit_sentiment``,
SST-2's labels, given as 0/1 ids), Reuters news sentences (CoNLL-2003 dev, unlabelled), SST-2's
dev sentences (full sentences where train has phrases of every length) and, for the demo model,
SST-2 itself. Each pool is scored once; each batch is a sample of it. Writes
``benchmarks/results/monitor.json`` and ``monitor.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import beta

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

from ftlab import stages  # noqa: E402
from ftlab.data.demo import generate_demo  # noqa: E402
from ftlab.learning.config import load_config  # noqa: E402
from ftlab.serving.export import load_exported  # noqa: E402
from ftlab.serving.monitor import frame, judge, label_names, score  # noqa: E402
from ftlab.serving.predict import read_meta  # noqa: E402

log = logging.getLogger("monitor")
DATA = ROOT.parent / "shared" / "data"
WORK = HERE / ".work" / "monitor"
RESULTS = HERE / "results"
POOL_ROWS = 5000  # rows of each pool scored (batches are drawn from them)


def tsv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype={"sentence": str})


def news_sentences() -> pd.DataFrame:
    """CoNLL-2003 dev (Reuters news, 1996) as sentences of five tokens or more, no labels."""
    sentences, words = [], []
    for line in (DATA / "conll2003" / "dev.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("-DOCSTART"):
            words.append(line.split()[0])
        elif words:
            sentences.append(" ".join(words))
            words = []
    return pd.DataFrame({"sentence": [s for s in sentences if len(s.split()) >= 5]})


def sst2_halves() -> tuple[Path, pd.DataFrame]:
    """SST-2's train.tsv split in two by a seeded shuffle: a training file, and the held-out half."""
    rows = tsv(DATA / "sst2" / "train.tsv").sample(frac=1.0, random_state=0).reset_index(drop=True)
    half = len(rows) // 2
    WORK.mkdir(parents=True, exist_ok=True)
    train = WORK / "sst2_train_half.csv"
    rows[:half].to_csv(train, index=False)
    return train, rows[half:].reset_index(drop=True)


def promoted(name: str, source: Any, text_column: str) -> Any:
    """Train and compare one model (once: the work directory keeps it), then promote it; its config."""
    root = WORK / name
    cfg = load_config(None, {
        "data.source": source, "task.text_column": text_column, "data.max_train_samples": 4000,
        "methods": ["full"], "train.epochs": 1, "train.eval_steps": 50, "train.checkpoint_dir": None,
        "data.prepared_dir": str(root / "data"), "train.output_dir": str(root / "runs"),
        "report.dir": str(root / "reports"), "promote.dir": str(root / "models"), "monitor.out_dir": str(root / "out"),
    })
    if not (root / "reports" / "comparison.json").is_file():
        stages.prepare(cfg)
        stages.train(cfg, "full")
        stages.compare(cfg)
    stages.promote(cfg)  # seconds: always, so that ftlab.json is the current code's
    return cfg


class Scored:
    """One pool of texts scored once by the model: its monitor frame and embeddings."""

    def __init__(self, model: Any, tokenizer: Any, meta: dict, texts: list[str], labels: list[str] | None):
        probs, self.embeddings = score(model, tokenizer, texts, meta)
        self.frame = frame(texts, labels, probs, tokenizer, meta["labels"])

    def sample(self, rows: int, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
        at = rng.choice(len(self.frame), size=min(rows, len(self.frame)), replace=False)
        return self.frame.iloc[at].reset_index(drop=True), self.embeddings[at]


def monitor_batch(reference: Scored, current: tuple[pd.DataFrame, np.ndarray], cfg: Any, meta: dict) -> dict:
    """The monitor's signals for one batch, as ``ftlab monitor`` computes them: scores, and whether
    each drifted at the current defaults (the accuracy threshold depends on the batch size)."""
    _, found = judge(reference.frame, reference.embeddings, *current, cfg.monitor, meta)
    return {k: s["score"] for k, s in found.items()} | {"drifted": [k for k, s in found.items() if s["drifted"]]}


def pools(name: str, heldout: pd.DataFrame) -> dict[str, tuple[list[str], pd.Series | None]]:
    """The model's fresh in-distribution pool first, then the shifted ones: texts and raw labels."""
    reddit = tsv(DATA / "reddit_sentiment" / "test.tsv")
    sst_dev = tsv(DATA / "sst2" / "dev.tsv")
    out: dict[str, tuple[list[str], pd.Series | None]] = {}
    if name == "sst2":
        out["in-distribution (held-out SST-2 train phrases)"] = (heldout["sentence"].tolist(), heldout["label"])
    else:
        fresh = pd.concat([generate_demo(400, 0.05, seed=1000 + s) for s in range(10)], ignore_index=True)
        out["in-distribution (fresh demo reviews)"] = (fresh["text"].tolist(), fresh["label"])
        out["SST-2 train phrases"] = (heldout["sentence"].tolist(), None)
    out["SST-2 dev sentences"] = (sst_dev["sentence"].tolist(), sst_dev["label"] if name == "sst2" else None)
    out["Reddit comments"] = (reddit["sentence"].tolist(), reddit["label"] if name == "sst2" else None)
    out["Reuters news (CoNLL-2003)"] = (news_sentences()["sentence"].tolist(), None)
    return out


def run_model(name: str, cfg: Any, heldout: pd.DataFrame, resamples: int, rows: int) -> dict:
    from ftlab.serving.promote import model_dir

    directory = model_dir(cfg)
    meta = read_meta(directory)
    model, tokenizer = load_exported(directory, meta)
    ref = pd.read_parquet(directory / "reference.parquet")
    reference = Scored(model, tokenizer, meta, ref["text"].astype(str).tolist(), [meta["labels"][i] for i in ref["label"]])
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"reference_rows": len(ref), "pools": {}}
    for i, (pool, (texts, raw)) in enumerate(pools(name, heldout).items()):
        keep = np.sort(rng.choice(len(texts), size=min(POOL_ROWS, len(texts)), replace=False))
        texts, raw = [texts[j] for j in keep], None if raw is None else raw.iloc[keep]
        labels = None if raw is None else label_names(raw, meta["labels"], "label", pool)
        scored = Scored(model, tokenizer, meta, texts, labels)
        batches = [monitor_batch(reference, scored.sample(rows, rng), cfg, meta)
                   for _ in range(resamples if i == 0 else max(3, resamples // 6))]
        out["pools"][pool] = {"in_distribution": i == 0, "pool_rows": len(texts), "batches": batches}
        log.info("%s / %s: %s", name, pool, {k: round(float(np.median([b[k] for b in batches])), 3)
                                             for k in batches[0] if k != "drifted"})
    return out


def upper_bound(failures: int, trials: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound of a rate seen ``failures`` times in ``trials``."""
    return 1.0 if failures == trials else float(beta.ppf(confidence, failures + 1, trials - failures))


def summarise(results: dict, min_drifted: int) -> dict:
    """Per model and pool: how many batches each signal flags, and how many the verdict does."""
    out = {}
    for model, r in results.items():
        for pool, p in r["pools"].items():
            batches = p["batches"]
            keys = [k for k in batches[0] if k != "drifted"]
            row = {"batches": len(batches), "drift_verdicts": sum(len(b["drifted"]) >= min_drifted for b in batches),
                   "flagged": {k: sum(k in b["drifted"] for b in batches) for k in keys},
                   "max": {k: round(max(b[k] for b in batches), 4) for k in keys},
                   "median": {k: round(float(np.median([b[k] for b in batches])), 4) for k in keys}}
            if p["in_distribution"]:
                row["false_alarm_upper_95"] = round(upper_bound(row["drift_verdicts"], len(batches)), 3)
            out[f"{model} / {pool}"] = row
    return out


def markdown(summary: dict, thresholds: dict[str, float], rows: int) -> str:
    keys = list(thresholds)
    lines = [f"# Monitor signals per batch of {rows} rows", "",
             "Each cell: the median score over batches (the largest), and how many batches it flagged. The "
             "accuracy threshold is the larger of `max_accuracy_drop` and 2.33 standard errors of a batch.", "",
             "| model / data | batches | drift verdicts | " + " | ".join(keys) + " |",
             "|---|---|---|" + "---|" * len(keys),
             "| threshold | | | " + " | ".join(f"{thresholds[k]:g}" for k in keys) + " |"]
    for name, row in summary.items():
        cells = [f"{row['median'][k]:.3f} ({row['max'][k]:.3f}){' ' + str(row['flagged'][k]) + '×' if row['flagged'][k] else ''}"
                 if k in row["median"] else "–" for k in keys]
        verdicts = f"{row['drift_verdicts']}/{row['batches']}"
        if "false_alarm_upper_95" in row:
            verdicts += f" (false alarms ≤ {row['false_alarm_upper_95']:.0%} at 95%)"
        lines.append(f"| {name} | {row['batches']} | {verdicts} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=30, help="in-distribution batches per model")
    parser.add_argument("--rows", type=int, default=200, help="rows per batch")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    random.seed(0)
    train_half, heldout = sst2_halves()
    configs = {"sst2": promoted("sst2", str(train_half), "sentence"), "demo": promoted("demo", "builtin:demo", "text")}
    results = {name: run_model(name, cfg, heldout, args.resamples, args.rows) for name, cfg in configs.items()}
    m = configs["sst2"].monitor
    thresholds = {"text_length": m.numeric_threshold, "word_pieces": m.numeric_threshold,
                  "non_letter_share": m.numeric_threshold, "confidence": m.numeric_threshold,
                  "prediction": m.category_threshold, "embedding": m.embedding_threshold, "accuracy": m.max_accuracy_drop}
    summary = summarise(results, m.min_drifted)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "monitor.json").write_text(json.dumps({
        "device": f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)", "rows_per_batch": args.rows, "thresholds": thresholds, "min_drifted": m.min_drifted,
        "summary": summary, "batches": results}, indent=2) + "\n")
    (RESULTS / "monitor.md").write_text(markdown(summary, thresholds, args.rows))
    print(markdown(summary, thresholds, args.rows))


if __name__ == "__main__":
    main()
