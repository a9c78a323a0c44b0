"""``ftlab monitor``: does new data still look like what the promoted model was trained on?

The reference is the model directory's ``reference.parquet`` (up to 1,000 scored test rows of the
promoted run: held out, like new data, where training rows made the model look more confident and
accurate than it is on anything new); the current data is the new file, or every CSV/TSV/JSONL/Parquet file of a
directory; past ``monitor.max_rows`` rows, a uniform random sample of that many (every row's text is
still checked; ``rows`` in monitor.json says how many were read and judged). Both are scored by the
promoted model, and one Evidently report compares them:

- text descriptors: length in characters; word pieces, the tokenizer's pieces per word (new words,
  names, slang and foreign scripts split into more or fewer pieces than the training text's: the
  unknown-token share it replaces was 0.0 on every real input, as a WordPiece vocabulary rarely
  emits ``[UNK]``); the share of non-letter characters;
- the model's own sentence embeddings (what its classification head reads), with Evidently's
  domain-classifier method: the ROC AUC of a classifier telling new rows from reference rows
  (in the JSON verdict; the HTML report leaves out Evidently's slow t-SNE plot of them);
- predictions: the predicted-class shares and the confidence (top probability);
- with labels in the new data (label names, or the label ids the prepared data stores), the
  accuracy against the promoted run's test accuracy.

Each signal drifts above its threshold in the ``monitor:`` params section; ``monitor.min_drifted``
drifted signals make the verdict ``drift``. Written: ``monitor.html`` (the verdict, every signal
against its threshold and the next step on top of Evidently's plots) and ``monitor.json``. No new
data (a missing or empty input directory) is the verdict ``no_data``, and writes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ftlab.core.escape import evidently_page
from ftlab.core.io import write_json, write_text
from ftlab.data.readers import SUFFIXES as READERS
from ftlab.learning.tasks import DataError
from ftlab.serving.intake import Sample, sample, texts_of
from ftlab.serving.labelling import labelling_queue, novelty, write_queue
from ftlab.serving.monitor_report import next_step, with_verdict

if TYPE_CHECKING:
    from ftlab.core.config import MonitorConfig

log = logging.getLogger(__name__)

NUMERIC = ("text_length", "word_pieces", "non_letter_share", "confidence")


@dataclass(frozen=True)
class InputColumns:
    """How to read the new data: its text and label columns (None: the model's) and whether a
    CSV/TSV file has a header line (without one, columns are numbered 1, 2, ...)."""

    text: str | None = None
    label: str | None = None
    header: bool = True


def read_input(path: Path, cfg: MonitorConfig, header: bool = True, text_column: str = "text",
               label_column: str = "label") -> tuple[Sample, list[Path]] | None:
    """A file, or every supported file in a directory (sorted by name): a uniform sample of at most
    ``monitor.max_rows`` of its rows (:func:`ftlab.serving.intake.sample`: memory stays bounded
    whatever the size), and the files; None when there is nothing to monitor yet: the directory does
    not exist, or holds no rows."""
    path = Path(path)
    if not path.exists() and not path.is_symlink() and path.suffix.lower() not in READERS:
        return None  # the incoming directory before any data arrived
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in READERS) if path.is_dir() else [path]
    found = sample(files, cfg.max_rows, header, text_column, label_column)
    if found.read == 0:
        return None
    if found.read > len(found.frame):
        log.warning("monitor: %s holds %d rows; judging a uniform random sample of %d (monitor.max_rows)",
                    path, found.read, len(found.frame))
    return found, files


def _as_label(value: Any) -> str:
    """A label as the user wrote it: 1.0 read from a float column is 1."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def label_names(values: pd.Series, names: list[str], column: str, where: str) -> list[str]:
    """The labels as the model's label names: names as they are, or label ids 0..K-1 (how the
    prepared data stores them) when no name is itself a number. Anything else is refused, naming
    the column and the values, before the model is loaded."""
    missing = values.index[values.isna()]
    if len(missing):
        raise DataError(f"{where}: column {column!r} has {len(missing)} row(s) with no label (rows "
                        f"{', '.join(map(str, missing[:5]))}): label every row, or remove the column to monitor drift alone")
    text = [_as_label(v) for v in values]
    found = set(text)
    if found <= set(names):
        return text
    by_id = {str(i): name for i, name in enumerate(names)}
    numeric_names = any(n.lstrip("-").isdigit() for n in names)
    if not numeric_names and found <= set(by_id):
        log.info("%s: column %r holds label ids; read as %s", where, column,
                 ", ".join(f"{i} = {n}" for i, n in by_id.items()))
        return [by_id[t] for t in text]
    unknown = sorted(found - set(names) - (set() if numeric_names else set(by_id)))
    ids = "" if numeric_names else f" nor their ids 0..{len(names) - 1}"
    raise DataError(f"{where}: column {column!r} has label(s) {unknown[:5]} that are neither the model's labels "
                    f"{names}{ids}: map them to the model's labels, name another column with --label-column, "
                    "or monitor a file without labels (drift only)")


def word_pieces(texts: list[str], tokenizer: Any) -> list[float]:
    """Per text, the tokenizer's pieces per word (its pre-tokenizer's words: punctuation counts as a
    word of one piece); 0.0 for a text with no word."""
    encoded = tokenizer(list(texts), add_special_tokens=False, verbose=False)
    out = []
    for i in range(len(texts)):
        words = [w for w in encoded.word_ids(i) if w is not None]
        out.append(len(words) / len(set(words)) if words else 0.0)
    return out


def heads_of(model: torch.nn.Module, num_labels: int) -> list[torch.nn.Module]:
    """The classification head: the linear layer(s) with one output per class."""
    heads: list[torch.nn.Module] = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == num_labels]
    if not heads:
        raise ValueError(f"no linear layer with {num_labels} outputs: cannot find the classification head")
    return heads


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


def evidently_report(reference: pd.DataFrame, current: pd.DataFrame, cfg: MonitorConfig, labels: list[str]) -> Any:
    """The Evidently snapshot over both sides: descriptor and prediction drift, quality with labels."""
    from evidently import BinaryClassification, DataDefinition, Dataset, MulticlassClassification, Report
    from evidently.descriptors import NonLetterCharacterPercentage, TextLength
    from evidently.metrics import ValueDrift
    from evidently.presets import ClassificationPreset

    quality = "label" in current.columns
    task = (BinaryClassification(target="label", prediction_labels="prediction", pos_label=labels[1])
            if len(labels) == 2 else MulticlassClassification(target="label", prediction_labels="prediction"))
    definition = DataDefinition(
        text_columns=["text"], numerical_columns=["word_pieces", "confidence"],
        categorical_columns=["prediction", *(["label"] if quality else [])], classification=[task] if quality else None)
    descriptors = [TextLength("text", alias="text_length"), NonLetterCharacterPercentage("text", alias="non_letter_share")]
    metrics: list[Any] = [ValueDrift(column=c, method="wasserstein", threshold=cfg.numeric_threshold) for c in NUMERIC]
    metrics.append(ValueDrift(column="prediction", method="jensenshannon", threshold=cfg.category_threshold))
    if quality:
        metrics.append(ClassificationPreset())

    def dataset(df: pd.DataFrame) -> Any:
        columns = ["text", "word_pieces", "confidence", "prediction", *(["label"] if quality else [])]
        return Dataset.from_pandas(df[columns], data_definition=definition, descriptors=descriptors)

    with np.errstate(invalid="ignore", divide="ignore"):
        return Report(metrics).run(dataset(current), dataset(reference))


def embedding_drift(reference: np.ndarray, current: np.ndarray, threshold: float) -> float:
    """ROC AUC of Evidently's domain classifier telling current from reference embeddings.

    Evidently's ``EmbeddingsDrift`` metric runs this same method but also a t-SNE for its plot,
    which took 84 s for 456 rows on 2 cores; the method alone takes well under a second.
    """
    from evidently.metrics.embeddings import ModelDriftMethod

    columns = [f"emb_{i}" for i in range(reference.shape[1])]
    score, _, _ = ModelDriftMethod(threshold=threshold)(pd.DataFrame(current, columns=columns),
                                                        pd.DataFrame(reference, columns=columns))
    return float(score)


def signals(snapshot: Any, reference: pd.DataFrame, current: pd.DataFrame, embedding_auc: float,
            cfg: MonitorConfig, test_accuracy: float | None = None) -> dict[str, dict]:
    """Each signal's score, threshold and whether it drifted, read from the report.

    Accuracy on labelled new rows is compared with the promoted run's test accuracy where the model
    records it (else the reference rows'), and drifts only beyond ``monitor.max_accuracy_drop`` and
    beyond the sampling noise of a batch this size (2.33 standard errors: one-sided 99%)."""
    found: dict[str, float] = {}
    for m in snapshot.dict()["metrics"]:
        if m["config"]["type"].endswith(":ValueDrift"):
            found[m["config"]["column"]] = float(m["value"])
    out: dict[str, dict[str, Any]] = {c: {"method": "wasserstein", "score": found[c], "threshold": cfg.numeric_threshold}
                                      for c in NUMERIC}
    out["prediction"] = {"method": "jensenshannon", "score": found["prediction"], "threshold": cfg.category_threshold}
    out["embedding"] = {"method": "domain classifier ROC AUC", "score": embedding_auc, "threshold": cfg.embedding_threshold}
    for s in out.values():
        s["drifted"] = s["score"] >= s["threshold"]
    if "label" in current.columns:
        baseline = "test accuracy" if test_accuracy is not None else "reference rows"
        ref_acc = test_accuracy if test_accuracy is not None else float((reference["label"] == reference["prediction"]).mean())
        cur_acc = float((current["label"] == current["prediction"]).mean())
        noise = 2.33 * float(np.sqrt(ref_acc * (1 - ref_acc) / len(current)))
        threshold = round(max(cfg.max_accuracy_drop, noise), 4)
        out["accuracy"] = {"method": f"accuracy drop below the {baseline}", "score": round(ref_acc - cur_acc, 6),
                           "reference": ref_acc, "current": cur_acc, "threshold": threshold,
                           "drifted": ref_acc - cur_acc > threshold}
    return out


def judge(reference: pd.DataFrame, ref_emb: np.ndarray, current: pd.DataFrame, cur_emb: np.ndarray,
          cfg: MonitorConfig, meta: dict) -> tuple[Any, dict[str, dict]]:
    """The Evidently snapshot and every signal of one batch of scored rows against the reference
    (``benchmarks/monitor.py`` calibrates the thresholds through this same function)."""
    snapshot = evidently_report(reference, current, cfg, meta["labels"])
    auc = embedding_drift(ref_emb, cur_emb, cfg.embedding_threshold)
    return snapshot, signals(snapshot, reference, current, auc, cfg, meta.get("test_metrics", {}).get("accuracy"))


def no_data(model_dir: Path, input_path: Path) -> dict:
    """The result when nothing has arrived: no verdict on drift, nothing written, nothing to retrain."""
    why = "does not exist yet" if not Path(input_path).exists() else f"holds no rows in {'/'.join(READERS)} files"
    result: dict[str, Any] = {"verdict": "no_data", "reasons": [f"nothing to monitor: {input_path} {why}"], "drifted": [],
              "signals": {}, "rows": {"current": 0}, "input": [], "model": str(model_dir), "report": None}
    log.info("monitor: %s", result["reasons"][0])
    return result


def read_current(model_dir: Path, input_path: Path, cfg: MonitorConfig, columns: InputColumns
                 ) -> tuple[dict, Sample, list[Path], list[str], list[str] | None] | None:
    """The model's ftlab.json, the new rows (a sample of at most monitor.max_rows), their files, texts
    and labels (as label names), all checked before the model is loaded; None when there is no new data."""
    from ftlab.serving.predict import default_text_column, read_meta

    meta = read_meta(model_dir, "monitor")
    text_column = columns.text or default_text_column(meta, columns.header)
    label_column = columns.label or (meta["label_column"] if columns.header else "2")
    read = read_input(Path(input_path), cfg, columns.header, text_column, label_column)
    if read is None:
        return None
    new, files = read
    where = str(input_path)
    if new.read < cfg.min_rows:
        raise DataError(f"monitor input {where}: {new.read} rows, fewer than monitor.min_rows={cfg.min_rows}")
    texts = texts_of(new, Path(input_path), text_column, columns.header)
    if columns.label is not None and label_column not in new.frame.columns:
        raise DataError(f"{where}: no column {label_column!r} (found {list(new.frame.columns)}) for --label-column")
    labels = (label_names(new.frame[label_column], meta["labels"], label_column, where)
              if label_column in new.frame.columns else None)
    return meta, new, files, texts, labels


def monitor(model_dir: Path, input_path: Path, cfg: MonitorConfig, out_dir: Path,
            columns: InputColumns = InputColumns()) -> dict:
    """Write ``out_dir/monitor.html`` and ``out_dir/monitor.json``; returns the JSON's content."""
    from ftlab.serving.export import load_exported

    current_input = read_current(Path(model_dir), Path(input_path), cfg, columns)
    if current_input is None:
        return no_data(model_dir, input_path)
    meta, new, files, texts, labels = current_input
    ref = pd.read_parquet(Path(model_dir) / "reference.parquet")
    model, tokenizer = load_exported(Path(model_dir), meta)
    names = meta["labels"]
    sides = []
    for side_texts, side_labels in ((ref["text"].astype(str).tolist(), [names[i] for i in ref["label"]]), (texts, labels)):
        probs, embeddings = score(model, tokenizer, side_texts, meta)
        sides.append((frame(side_texts, side_labels, probs, tokenizer, names), embeddings))
    (reference, ref_emb), (current, cur_emb) = sides
    snapshot, found = judge(reference, ref_emb, current, cur_emb, cfg, meta)
    drifted = [k for k, s in found.items() if s["drifted"]]
    verdict = "drift" if len(drifted) >= cfg.min_drifted else "ok"
    reasons = [f"{k}: {s['method']} {s['score']:.3f} ≥ {s['threshold']}" for k, s in found.items() if s["drifted"]]
    result: dict[str, Any] = {
        "verdict": verdict, "reasons": reasons or [f"no signal above its threshold ({len(found)} checked)"],
        "drifted": drifted, "signals": found, "min_drifted": cfg.min_drifted,
        "rows": {"reference": len(ref), "current": len(texts), "read": new.read}, "input": [str(f) for f in files],
        "labelled": labels is not None,
        "model": str(model_dir), "report": str(Path(out_dir) / "monitor.html")}
    if labels is None and cfg.queue_size:  # from drift to labels: the rows to label first
        queue = labelling_queue(texts, current["prediction"].to_numpy(), current["confidence"].to_numpy(),
                                novelty(cur_emb, ref_emb), cfg.queue_size)
        result["labelling_queue"] = write_queue(queue, Path(out_dir), meta)
    result["next_step"] = next_step(result)  # after the queue: an unlabelled batch is pointed at it
    write_text(Path(out_dir) / "monitor.html", with_verdict(evidently_page(snapshot.get_html_str(as_iframe=False)), result))
    write_json(Path(out_dir) / "monitor.json", result)
    log.info("monitor: %s (%s)", verdict, "; ".join(result["reasons"]))
    return result
