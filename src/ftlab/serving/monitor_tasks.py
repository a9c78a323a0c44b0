"""``ftlab monitor`` for every task the product trains but single-text classification (which
:mod:`ftlab.serving.monitor` scores with its embeddings): pairs (cross- or bi-encoded), regression,
multi-label, NER and causal LMs (prompts in a column; each answer generated greedily as the run's test
answers were, its length in words the output signal, exact match the primary metric).

The new rows are scored by the promoted model exactly as the promotion gate re-scores a champion
(:func:`ftlab.serving.gate.rescore`: the run's own tokenisation, outputs and decision), into the
frame the run wrote for its test split; the reference is ``reference.parquet``, that frame for up to
1,000 test rows. From both frames come the same columns (:func:`outputs`): the texts (both of a
pair), the output signal that fits the task (class and confidence; a regressor's predicted score;
labels per text and each label's rate; entities per text and each entity type's rate), the sentence
embeddings a run-files sequence model's head reads (:func:`head_inputs`), and, with labels, the task's
primary metric against the run's test value (:mod:`ftlab.serving.monitor_signals`).

An NER batch is raw texts (``text``), split into words by the tokenizer's own pre-tokenizer, or, with
labels, words and BIO tags as the training files hold them (list columns ``tokens`` and ``tags``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ftlab.learning.tasks import TASKS, DataError, Task
from ftlab.serving.intake import Sample, texts_of
from ftlab.serving.monitor_input import (
    label_names,
    label_sets_of,
    read_input,
    sample_rows,
    scores_of,
    tags_of,
    words_of,
)
from ftlab.serving.monitor_signals import (
    Layout,
    drift_signals,
    drop_signal,
    embedding_drift,
    evidently_report,
    heads_of,
    set_signal,
    word_pieces,
)

if TYPE_CHECKING:
    from ftlab.core.config import MonitorConfig
    from ftlab.serving.monitor_input import InputColumns

log = logging.getLogger(__name__)

# what each task's batch judges besides its texts: numeric and categorical per-row outputs, predicted sets
OUTPUTS = {"classification": (("confidence",), ("prediction",), None),
           "regression": (("predicted_score",), (), None),
           "multilabel": (("labels_per_text",), (), "label_rates"),
           "token_classification": (("entities_per_text",), (), "entity_types"),
           "causal_lm": (("answer_words",), (), None)}


@dataclass
class Batch:
    """The new rows as the task's canonical frame (``text``, ``text_pair``, ``tokens``, ``label``:
    encoded as the prepared data is), how many rows the input held, its files, whether it has labels."""

    canon: pd.DataFrame
    read: int
    files: list[Path]
    labelled: bool


def task_of(model_dir: Path, meta: dict) -> Task:
    """The promoted model's task, with its run's own options where the directory keeps its config
    (run files), else those ``ftlab.json`` records (an export)."""
    if (model_dir / "config.yaml").is_file():
        from ftlab.analysis.rundir import Run

        return Run(model_dir).task
    kind = TASKS[meta["task_type"]]
    pair = {k: meta[k] for k in ("text_pair_column", "pair_encoding") if meta.get(k)}
    return kind(kind.Options(type=meta["task_type"], text_column=meta["text_column"],
                             label_column=meta["label_column"], **pair))


def ner_canon(sample: Sample, path: Path, meta: dict, columns: InputColumns, tokenizer: Any) -> tuple[pd.DataFrame, bool]:
    """An NER batch as the task's frame: labelled rows' words and tags, or raw texts split into words."""
    label = columns.label or meta["label_column"]
    if label in sample.frame.columns:
        words = words_of(sample, columns.text or meta["text_column"])
        tags = tags_of(sample, words, label, meta["labels"])
        return pd.DataFrame({"text": [" ".join(w) for w in words], "tokens": words, "label": tags}), True
    if columns.label is not None:
        raise DataError(f"{path}: no column {label!r} (found {list(sample.frame.columns)}) for --label-column")
    text = columns.text or ("text" if columns.header else "1")
    return raw_words(texts_of(sample, path, text, columns.header), tokenizer), False


def raw_words(texts: list[str], tokenizer: Any) -> pd.DataFrame:
    """Raw texts as an NER frame: the words of the tokenizer's own pre-tokenizer (punctuation apart, as
    CoNLL files keep it), tagged O. The reference's texts are split and scored this same way against
    raw texts: its CoNLL words differ ("'s" against "'", "s"), and entity counts with them."""
    split = tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str
    words = [[w for w, _ in split(t)] or [t] for t in texts]
    return pd.DataFrame({"text": texts, "tokens": words, "label": [[0] * len(w) for w in words]})


def source_names(task: Task, meta: dict) -> tuple[str, str]:
    """The training text and label columns: a causal LM's prompt and response columns."""
    if task.name == "causal_lm":
        return task.opts.prompt_column, task.opts.response_column
    return meta["text_column"], meta["label_column"]


def sequence_canon(sample: Sample, path: Path, meta: dict, task: Task, columns: InputColumns) -> tuple[pd.DataFrame, bool]:
    """A pair, regression, multi-label or prompt batch as the task's frame, labels encoded where present."""
    from ftlab.serving.predict import pair_column

    pair, (text, label) = meta.get("text_pair_column"), source_names(task, meta)
    text = columns.text or (text if columns.header else "1")
    label = columns.label or (label if columns.header else ("3" if pair else "2"))
    canon = pd.DataFrame({"text": texts_of(sample, path, text, columns.header)})
    if pair:
        canon["text_pair"] = texts_of(sample, path, pair_column(meta, columns.pair, columns.header) or pair, columns.header)
    if label not in sample.frame.columns:
        if columns.label is not None:
            raise DataError(f"{path}: no column {label!r} (found {list(sample.frame.columns)}) for --label-column")
        empty: Any = {"classification": 0, "regression": 0.0, "causal_lm": ""}.get(task.name)
        return canon.assign(label=[[] for _ in range(len(canon))] if empty is None else empty), False
    if task.name == "classification":
        names = meta["labels"]
        found = label_names(sample.frame[label].reset_index(drop=True), names, label, str(path))
        return canon.assign(label=[names.index(n) for n in found]), True
    if task.name == "regression":
        return canon.assign(label=scores_of(sample, label)), True
    if task.name == "causal_lm":  # the responses: non-empty texts, named by line when not
        return canon.assign(label=texts_of(sample, path, label, columns.header)), True
    return canon.assign(label=label_sets_of(sample, label, task, meta["labels"])), True


def read_batch(model_dir: Path, meta: dict, task: Task, input_path: Path, cfg: MonitorConfig,
               columns: InputColumns, tokenizer: Any) -> Batch | None:
    """The new rows (a sample of at most monitor.max_rows) as the task's frame, checked before the
    model loads; None when nothing has arrived."""
    if task.name == "token_classification":
        found = read_input(input_path, cfg, columns.header, sampler=sample_rows)
    else:
        text, label = source_names(task, meta)
        found = read_input(input_path, cfg, columns.header, columns.text or (text if columns.header else "1"),
                           columns.label or label)
    if found is None:
        return None
    sample, files = found
    if sample.read < cfg.min_rows:
        raise DataError(f"monitor input {input_path}: {sample.read} rows, fewer than monitor.min_rows={cfg.min_rows}")
    canon, labelled = (ner_canon(sample, input_path, meta, columns, tokenizer) if task.name == "token_classification"
                       else sequence_canon(sample, input_path, meta, task, columns))
    return Batch(canon, sample.read, files, labelled)


def outputs(task: Task, predictions: pd.DataFrame, labels: list[str], tokenizer: Any,
            layout: Layout) -> tuple[pd.DataFrame, list[list[str]] | None]:
    """One side's monitored columns from the task's predictions frame, and its predicted sets (None:
    the task predicts no sets)."""
    frame = predictions[list(layout.texts)].astype(str).reset_index(drop=True)
    for column, prefix in layout.texts.items():
        frame[f"{prefix}word_pieces"] = word_pieces(list(frame[column]), tokenizer)
    sets = None
    if task.name == "classification":
        probs = predictions[[f"prob_{n}" for n in labels]].to_numpy()
        frame["prediction"] = np.asarray(labels, dtype=object)[probs.argmax(-1)]
        frame["confidence"] = probs.max(-1)
        if layout.classes:  # labelled
            frame["label"] = [labels[int(i)] for i in predictions["label"]]
    elif task.name == "regression":
        frame["predicted_score"] = predictions["prediction"].to_numpy(dtype=float)
    elif task.name == "causal_lm":
        frame["answer_words"] = [float(len(str(a).split())) for a in predictions["prediction"]]
    elif task.name == "multilabel":
        sets = [[labels[int(i)] for i in row] for row in predictions["prediction"]]
        frame["labels_per_text"] = [float(len(s)) for s in sets]
    else:
        from seqeval.metrics.sequence_labeling import get_entities

        sets = [[kind for kind, _, _ in get_entities([labels[int(t)] for t in row])] for row in predictions["prediction"]]
        frame["entities_per_text"] = [float(len(s)) for s in sets]
    return frame, sets


def head_inputs(model_dir: Path, meta: dict, task: Task, frames: list[pd.DataFrame], tokenizer: Any) -> list[np.ndarray] | None:
    """What a sequence model kept as run files feeds its head (its pooled sentence embedding), for each
    frame's rows in their order, tokenized as its test split was; None for the models whose head reads
    no one vector per row (NER, causal LMs) or that are no run files (a bi-encoder's export)."""
    if task.name not in ("classification", "regression", "multilabel") or meta.get("layout") != "ftlab":
        return None
    import torch

    from ftlab.serving.export import load_promoted
    from ftlab.training.scoring import predict

    run_cfg, model, labels = load_promoted(model_dir)
    seen: list[torch.Tensor] = []
    hooks = [head.register_forward_pre_hook(lambda m, args: seen.append(args[0].float()))
             for head in heads_of(model, len(labels))]
    out = []
    try:
        for df in frames:
            seen.clear()
            dataset = task.tokenize(df, tokenizer, run_cfg.model.max_length, labels)
            predict(model, dataset, task.collator(tokenizer), 64)
            order = np.argsort([len(ids) for ids in dataset["input_ids"]], kind="stable")  # the order predict scored in
            rows = np.empty((len(df), seen[0].shape[-1]), dtype=np.float32)
            rows[order] = torch.cat(seen).cpu().numpy()
            out.append(rows)
    finally:
        for hook in hooks:
            hook.remove()
    return out


def layout_of(task: Task, meta: dict, labelled: bool, pair: bool) -> Layout:
    """The columns judged, each text's descriptors named after its column when the model reads pairs."""
    texts = {"text": f"{meta['text_column']}." if pair else ""}
    if pair:
        texts["text_pair"] = f"{meta['text_pair_column']}."
    numeric, categorical, _ = OUTPUTS[task.name]
    classes = tuple(meta["labels"]) if task.name == "classification" and labelled else ()
    return Layout(texts, numeric, categorical, classes)


def judge_task(model_dir: Path, meta: dict, input_path: Path, cfg: MonitorConfig,
               columns: InputColumns) -> tuple[Any, dict[str, dict], Batch, int] | None:
    """The Evidently snapshot and every signal of a batch against the reference, the batch and how many
    reference rows there were; None when nothing has arrived."""
    from transformers import AutoTokenizer

    from ftlab.serving.gate import rescore

    task = task_of(model_dir, meta)
    if task.name == "causal_lm" and task.opts.messages_column:
        raise DataError(f"{model_dir}: ftlab monitor reads a causal LM's prompts from a column; this one trained on "
                        f"chat messages (task.messages_column {task.opts.messages_column!r}), which it does not read yet")
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir / "tokenizer" if (model_dir / "tokenizer").is_dir() else model_dir))
    batch = read_batch(model_dir, meta, task, input_path, cfg, columns, tokenizer)
    if batch is None:
        return None
    labels = meta["labels"]
    current, why = rescore(model_dir, batch.canon, labels, task)
    if current is None:
        raise DataError(f"{model_dir}: the model cannot score this batch: {why}")
    ref = pd.read_parquet(model_dir / "reference.parquet")
    if task.name == "token_classification" and not batch.labelled:
        ref, _ = rescore(model_dir, raw_words(list(ref["text"]), tokenizer), labels, task)
    layout = layout_of(task, meta, batch.labelled, "text_pair" in batch.canon)
    (reference, ref_sets), (new, new_sets) = (outputs(task, df, labels, tokenizer, layout) for df in (ref, current))
    snapshot = evidently_report(reference, new, cfg, layout)
    found = drift_signals(snapshot, cfg, layout)
    set_name = OUTPUTS[task.name][2]
    if set_name is not None and ref_sets is not None and new_sets is not None:
        found[set_name] = set_signal(ref_sets, new_sets, cfg.category_threshold)
    embedded = head_inputs(model_dir, meta, task, [ref, batch.canon], tokenizer)
    if embedded is not None:
        found["embedding"] = {"method": "domain classifier ROC AUC", "threshold": cfg.embedding_threshold,
                              "score": embedding_drift(embedded[0], embedded[1], cfg.embedding_threshold)}
    if batch.labelled:
        metric = task.primary
        value = float(task.test_metrics(current.reset_index(drop=True), labels)[metric.name])
        test = meta.get("test_metrics", {}).get(metric.name)
        baseline = float(test) if test is not None else float(task.test_metrics(ref, labels)[metric.name])
        found[metric.name] = drop_signal(metric, task.statistic, task.example_scores(current, labels), value, baseline,
                                         f"test {metric.label}" if test is not None else "reference rows", cfg)
    return snapshot, found, batch, len(ref)
