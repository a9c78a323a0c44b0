"""``ftlab monitor``: does new data still look like what the promoted model was trained on?

The reference is the model directory's ``reference.parquet`` (up to 1,000 scored test rows of the
promoted run: held out, like new data, where training rows made the model look more confident and
accurate than it is on anything new); the current data is the new file, or every CSV/TSV/JSONL/Parquet file of a
directory; past ``monitor.max_rows`` rows, a uniform random sample of that many (every row's text is
still checked; ``rows`` in monitor.json says how many were read and judged). The new rows are scored
by the promoted model, and one Evidently report compares both sides (:mod:`ftlab.serving.monitor_signals`):

- text descriptors of every text column (both texts of a pair, named after their columns): length in
  characters; word pieces, the tokenizer's pieces per word (new words, names, slang and foreign
  scripts split into more or fewer pieces than the training text's: the unknown-token share it
  replaces was 0.0 on every real input, as a WordPiece vocabulary rarely emits ``[UNK]``); the share
  of non-letter characters;
- the output that fits the task: predicted-class shares and confidence (classes), the predicted
  score's distribution (regression), labels per text and each label's rate (multi-label), entities
  per text and each entity type's rate (NER), answer length in words (causal LMs)
  (:mod:`ftlab.serving.monitor_tasks`);
- the model's own sentence embeddings (what its head reads; every model with one pooled vector per
  row: not bi-encoders, NER or causal LMs), with Evidently's domain-classifier method: the ROC AUC of a classifier telling new rows from
  reference rows (in the JSON verdict; the HTML report leaves out Evidently's slow t-SNE plot of them);
- with labels in the new data (as training reads them; classes also as the ids 0..K-1 the prepared
  data stores), the task's primary metric (accuracy, Spearman, micro-F1, entity F1, exact match)
  against the promoted run's test value.

Each signal drifts above its threshold in the ``monitor:`` params section; ``monitor.min_drifted``
drifted signals make the verdict ``drift``. Written: ``monitor.html`` (the verdict, every signal
against its threshold and the next step on top of Evidently's plots) and ``monitor.json``. No new
data (a missing or empty input directory) is the verdict ``no_data``, and writes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ftlab.core.escape import evidently_page
from ftlab.core.io import write_json, write_text
from ftlab.data.readers import SUFFIXES as READERS
from ftlab.learning.tasks import TASKS, DataError
from ftlab.serving.intake import Sample, texts_of
from ftlab.serving.labelling import labelling_queue, novelty, write_queue
from ftlab.serving.monitor_input import InputColumns, label_names, read_input
from ftlab.serving.monitor_report import next_step, with_verdict
from ftlab.serving.monitor_signals import (
    Layout,
    drift_signals,
    drop_signal,
    embedding_drift,
    evidently_report,
    heads_of,
    judged,
    word_pieces,
)

if TYPE_CHECKING:
    from ftlab.core.config import MonitorConfig

__all__ = ["InputColumns", "frame", "judge", "label_names", "monitor", "read_input", "score", "word_pieces"]
log = logging.getLogger(__name__)


def score(model: torch.nn.Module, tokenizer: Any, texts: list[str], meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities and sentence embeddings (the head's input) of ``texts``, in their order."""
    from ftlab.serving.predict import class_probabilities

    seen: list[torch.Tensor] = []
    hooks = [head.register_forward_pre_hook(lambda m, args: seen.append(args[0].float()))
             for head in heads_of(model, len(meta["labels"]))]  # a peft head has an active and a frozen copy
    try:
        probs = class_probabilities(model, tokenizer, texts, 128, meta["max_length"], bf16=False)
    finally:
        for hook in hooks:
            hook.remove()
    ids = tokenizer(texts, truncation=True, max_length=meta["max_length"], verbose=False)["input_ids"]
    order = np.argsort([len(x) for x in ids], kind="stable")  # the order class_probabilities scored in
    embeddings = np.empty((len(texts), seen[0].shape[-1]), dtype=np.float32)
    embeddings[order] = torch.cat(seen).cpu().numpy()
    return probs, embeddings


def frame(texts: list[str], labels: list[str] | None, probs: np.ndarray, tokenizer: Any,
          class_names: list[str]) -> pd.DataFrame:
    """The monitored columns of one side: text, word pieces, prediction, confidence, label (if any)."""
    df = pd.DataFrame({"text": texts, "word_pieces": word_pieces(texts, tokenizer),
                       "prediction": np.asarray(class_names, dtype=object)[probs.argmax(-1)],
                       "confidence": probs.max(-1)})
    if labels is not None:
        df["label"] = labels
    return df


CLASSIFIER = Layout({"text": ""}, ("confidence",), ("prediction",))


def judge(reference: pd.DataFrame, ref_emb: np.ndarray, current: pd.DataFrame, cur_emb: np.ndarray,
          cfg: MonitorConfig, meta: dict) -> tuple[Any, dict[str, dict]]:
    """The Evidently snapshot and every signal of one batch of scored rows against the reference
    (``benchmarks/monitor.py`` calibrates the thresholds through this same function). Accuracy on
    labelled rows is judged against the promoted run's test accuracy where the model records it,
    else the reference rows'."""
    labelled = "label" in current.columns
    layout = replace(CLASSIFIER, classes=tuple(meta["labels"]) if labelled else ())
    snapshot = evidently_report(reference, current, cfg, layout)
    found = drift_signals(snapshot, cfg, layout)
    found["embedding"] = {"method": "domain classifier ROC AUC", "threshold": cfg.embedding_threshold,
                          "score": embedding_drift(ref_emb, cur_emb, cfg.embedding_threshold)}
    if labelled:
        task = TASKS["classification"]
        test = meta.get("test_metrics", {}).get("accuracy")
        right = (current["label"] == current["prediction"]).to_numpy(dtype=float)
        baseline = float(test) if test is not None else float((reference["label"] == reference["prediction"]).mean())
        found["accuracy"] = drop_signal(task.metrics[0], task.statistic, right[:, None], float(right.mean()), baseline,
                                        "test accuracy" if test is not None else "reference rows", cfg)
    return snapshot, judged(found)


def no_data(model_dir: Path, input_path: Path) -> dict:
    """The result when nothing has arrived: no verdict on drift, nothing written, nothing to retrain."""
    why = "does not exist yet" if not Path(input_path).exists() else f"holds no rows in {'/'.join(READERS)} files"
    result: dict[str, Any] = {"verdict": "no_data", "reasons": [f"nothing to monitor: {input_path} {why}"], "drifted": [],
              "signals": {}, "rows": {"current": 0}, "input": [], "model": str(model_dir), "report": None}
    log.info("monitor: %s", result["reasons"][0])
    return result


def monitored_meta(model_dir: Path) -> dict:
    """``ftlab.json`` of a promoted model, refused by name before any input is read when its task is
    none ftlab trains (a directory written by a later version)."""
    from ftlab.serving.predict import read_meta

    return read_meta(model_dir, "monitor")


def read_texts(model_dir: Path, meta: dict, input_path: Path, cfg: MonitorConfig, columns: InputColumns
               ) -> tuple[Sample, list[Path], list[str], list[str] | None] | None:
    """A single-text classifier's new rows (a sample of at most monitor.max_rows), their files, texts
    and labels (as label names), all checked before the model is loaded; None when there is no new data."""
    from ftlab.serving.predict import default_text_column

    text_column = columns.text or default_text_column(meta, columns.header)
    label_column = columns.label or (meta["label_column"] if columns.header else "2")
    read = read_input(input_path, cfg, columns.header, text_column, label_column)
    if read is None:
        return None
    new, files = read
    where = str(input_path)
    if new.read < cfg.min_rows:
        raise DataError(f"monitor input {where}: {new.read} rows, fewer than monitor.min_rows={cfg.min_rows}")
    texts = texts_of(new, input_path, text_column, columns.header)
    if columns.label is not None and label_column not in new.frame.columns:
        raise DataError(f"{where}: no column {label_column!r} (found {list(new.frame.columns)}) for --label-column")
    labels = (label_names(new.frame[label_column], meta["labels"], label_column, where)
              if label_column in new.frame.columns else None)
    return new, files, texts, labels


@dataclass
class Judged:
    """One batch judged: the Evidently snapshot, every signal, the rows counted, the files read,
    whether it had labels, and the labelling queue written for it (if any)."""

    snapshot: Any
    signals: dict[str, dict]
    rows: dict[str, int]
    files: list[Path]
    labelled: bool
    queue: dict | None = None


def judge_texts(model_dir: Path, meta: dict, input_path: Path, cfg: MonitorConfig, columns: InputColumns,
                out_dir: Path) -> Judged | None:
    """A single-text classifier's batch: both sides scored with their sentence embeddings; an unlabelled
    batch gets a labelling queue."""
    from ftlab.serving.export import load_exported

    found = read_texts(model_dir, meta, input_path, cfg, columns)
    if found is None:
        return None
    new, files, texts, labels = found
    ref = pd.read_parquet(model_dir / "reference.parquet")
    model, tokenizer = load_exported(model_dir, meta)
    names = meta["labels"]
    sides = []
    for side_texts, side_labels in ((ref["text"].astype(str).tolist(), [names[i] for i in ref["label"]]), (texts, labels)):
        probs, embeddings = score(model, tokenizer, side_texts, meta)
        sides.append((frame(side_texts, side_labels, probs, tokenizer, names), embeddings))
    (reference, ref_emb), (current, cur_emb) = sides
    snapshot, signals = judge(reference, ref_emb, current, cur_emb, cfg, meta)
    rows = {"reference": len(ref), "current": len(texts), "read": new.read}
    queue = None
    if labels is None and cfg.queue_size:  # from drift to labels: the rows to label first
        ranked = labelling_queue(texts, current["prediction"].to_numpy(), current["confidence"].to_numpy(),
                                 novelty(cur_emb, ref_emb), cfg.queue_size)
        queue = write_queue(ranked, out_dir, meta)
    return Judged(snapshot, signals, rows, files, labels is not None, queue)


def judge_any(model_dir: Path, meta: dict, input_path: Path, cfg: MonitorConfig, columns: InputColumns,
              out_dir: Path) -> Judged | None:
    """The batch judged by the signals that fit the model's task (:mod:`ftlab.serving.monitor_tasks`
    for all but an exported single-text classifier)."""
    if meta["task_type"] == "classification" and not meta.get("text_pair_column") and meta.get("layout") != "ftlab":
        return judge_texts(model_dir, meta, input_path, cfg, columns, out_dir)
    from ftlab.serving.monitor_tasks import judge_task

    found = judge_task(model_dir, meta, input_path, cfg, columns)
    if found is None:
        return None
    snapshot, signals, batch, reference = found
    rows = {"reference": reference, "current": len(batch.canon), "read": batch.read}
    return Judged(snapshot, judged(signals), rows, batch.files, batch.labelled)


def monitor(model_dir: Path, input_path: Path, cfg: MonitorConfig, out_dir: Path,
            columns: InputColumns = InputColumns()) -> dict:
    """Write ``out_dir/monitor.html`` and ``out_dir/monitor.json``; returns the JSON's content."""
    from ftlab.serving.predict import pair_column

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    meta = monitored_meta(model_dir)
    pair_column(meta, columns.pair, columns.header)  # a second-text column for a model of single texts: refused
    found = judge_any(model_dir, meta, Path(input_path), cfg, columns, out_dir)
    if found is None:
        return no_data(model_dir, input_path)
    drifted = [k for k, s in found.signals.items() if s["drifted"]]
    verdict = "drift" if len(drifted) >= cfg.min_drifted else "ok"
    reasons = [f"{k}: {s['method']} {s['score']:.3f} ≥ {s['threshold']}" for k, s in found.signals.items() if s["drifted"]]
    result: dict[str, Any] = {
        "verdict": verdict, "reasons": reasons or [f"no signal above its threshold ({len(found.signals)} checked)"],
        "drifted": drifted, "signals": found.signals, "min_drifted": cfg.min_drifted, "rows": found.rows,
        "input": [str(f) for f in found.files], "labelled": found.labelled, "task": meta["task_type"],
        "metric": TASKS[meta["task_type"]].metrics[0].label, "model": str(model_dir), "report": str(out_dir / "monitor.html")}
    if found.queue is not None:
        result["labelling_queue"] = found.queue
    result["next_step"] = next_step(result)  # after the queue: an unlabelled batch is pointed at it
    page = evidently_page(found.snapshot.get_html_str(as_iframe=False))
    write_text(out_dir / "monitor.html", with_verdict(page, result))
    write_json(out_dir / "monitor.json", result)
    log.info("monitor: %s (%s)", verdict, "; ".join(result["reasons"]))
    return result
