"""``ftlab monitor``: does new data still look like what the promoted model was trained on?

The reference is the model directory's ``reference.parquet`` (the scored training subset of the
promoted run); the current data is the new file, or every CSV/TSV/JSONL/Parquet file of a
directory. Both are scored by the promoted model, and one Evidently report compares them:

- text descriptors: length in characters, OOV rate (the share of the model tokenizer's unknown
  token: no download, unlike Evidently's NLTK-based descriptor), share of non-letter characters;
- the model's own sentence embeddings (what its classification head reads), with Evidently's
  domain-classifier method: the ROC AUC of a classifier telling new rows from reference rows
  (in the JSON verdict; the HTML report leaves out Evidently's slow t-SNE plot of them);
- predictions: the predicted-class shares and the confidence (top probability);
- with labels in the new data, the accuracy against the reference's.

Each signal drifts above its threshold in the ``monitor:`` params section; ``monitor.min_drifted``
drifted signals make the verdict ``drift``. Written: ``monitor.html`` and ``monitor.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ftlab.io import write_json, write_text
from ftlab.readers import SUFFIXES as READERS
from ftlab.tasks import DataError

if TYPE_CHECKING:
    from ftlab.config import MonitorConfig

log = logging.getLogger(__name__)

NUMERIC = ("text_length", "oov_rate", "non_letter_share", "confidence")


def read_input(path: Path) -> tuple[pd.DataFrame, list[Path]]:
    """A file, or every supported file in a directory (sorted by name), as one DataFrame."""
    from ftlab.predict import read_chunks

    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in READERS) if path.is_dir() else [path]
    if not files:
        raise DataError(f"monitor input {path}: no {'/'.join(sorted(READERS))} files in it")
    return pd.concat([c for f in files for c in read_chunks(f)], ignore_index=True), files


def heads_of(model: torch.nn.Module, num_labels: int) -> list[torch.nn.Module]:
    """The classification head: the linear layer(s) with one output per class."""
    heads: list[torch.nn.Module] = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == num_labels]
    if not heads:
        raise ValueError(f"no linear layer with {num_labels} outputs: cannot find the classification head")
    return heads


def score(model: torch.nn.Module, tokenizer: Any, texts: list[str], meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities and sentence embeddings (the head's input) of ``texts``, in their order."""
    from ftlab.predict import class_probabilities

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
    """The monitored columns of one side: text, OOV rate, prediction, confidence, label (if any)."""
    from ftlab.checks import oov_rates

    df = pd.DataFrame({"text": texts, "oov_rate": oov_rates(texts, tokenizer),
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
        text_columns=["text"], numerical_columns=["oov_rate", "confidence"],
        categorical_columns=["prediction", *(["label"] if quality else [])], classification=[task] if quality else None)
    descriptors = [TextLength("text", alias="text_length"), NonLetterCharacterPercentage("text", alias="non_letter_share")]
    metrics: list[Any] = [ValueDrift(column=c, method="wasserstein", threshold=cfg.numeric_threshold) for c in NUMERIC]
    metrics.append(ValueDrift(column="prediction", method="jensenshannon", threshold=cfg.category_threshold))
    if quality:
        metrics.append(ClassificationPreset())

    def dataset(df: pd.DataFrame) -> Any:
        columns = ["text", "oov_rate", "confidence", "prediction", *(["label"] if quality else [])]
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
            cfg: MonitorConfig) -> dict[str, dict]:
    """Each signal's score, threshold and whether it drifted, read from the report."""
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
        ref_acc = float((reference["label"] == reference["prediction"]).mean())
        cur_acc = float((current["label"] == current["prediction"]).mean())
        out["accuracy"] = {"method": "accuracy drop", "score": round(ref_acc - cur_acc, 6), "reference": ref_acc,
                           "current": cur_acc, "threshold": cfg.max_accuracy_drop,
                           "drifted": ref_acc - cur_acc > cfg.max_accuracy_drop}
    return out


def monitor(model_dir: Path, input_path: Path, cfg: MonitorConfig, out_dir: Path) -> dict:
    """Write ``out_dir/monitor.html`` and ``out_dir/monitor.json``; returns the JSON's content."""
    from ftlab.export import load_exported
    from ftlab.predict import read_meta, texts_of

    meta = read_meta(model_dir)
    new, files = read_input(Path(input_path))
    if len(new) < cfg.min_rows:
        raise DataError(f"monitor input {input_path}: {len(new)} rows, fewer than monitor.min_rows={cfg.min_rows}")
    ref = pd.read_parquet(Path(model_dir) / "reference.parquet")
    model, tokenizer = load_exported(Path(model_dir), meta)
    names = meta["labels"]
    sides = []
    for texts, labels in (
        (ref["text"].astype(str).tolist(), [names[i] for i in ref["label"]]),
        (texts_of(new, Path(input_path), meta["text_column"]),
         new[meta["label_column"]].astype(str).tolist() if meta["label_column"] in new.columns else None),
    ):
        probs, embeddings = score(model, tokenizer, texts, meta)
        sides.append((frame(texts, labels, probs, tokenizer, names), embeddings))
    (reference, ref_emb), (current, cur_emb) = sides
    snapshot = evidently_report(reference, current, cfg, names)
    found = signals(snapshot, reference, current, embedding_drift(ref_emb, cur_emb, cfg.embedding_threshold), cfg)
    drifted = [k for k, s in found.items() if s["drifted"]]
    verdict = "drift" if len(drifted) >= cfg.min_drifted else "ok"
    reasons = [f"{k}: {s['method']} {s['score']:.3f} ≥ {s['threshold']}" for k, s in found.items() if s["drifted"]]
    result: dict[str, Any] = {"verdict": verdict, "reasons": reasons or [f"no signal above its threshold ({len(found)} checked)"],
              "drifted": drifted, "signals": found, "min_drifted": cfg.min_drifted,
              "rows": {"reference": len(ref), "current": len(new)}, "input": [str(f) for f in files],
              "model": str(model_dir), "report": str(Path(out_dir) / "monitor.html")}
    write_text(Path(out_dir) / "monitor.html", snapshot.get_html_str(as_iframe=False))
    write_json(Path(out_dir) / "monitor.json", result)
    log.info("monitor: %s (%s)", verdict, "; ".join(result["reasons"]))
    return result
