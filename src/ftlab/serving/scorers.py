"""What ``ftlab predict`` writes for multi-label and NER models (promoted as their run's files) and
bi-encoded pairs (a sentence-transformers export).

Multi-label: the labels whose probability (sigmoid) reaches the run's decision threshold, tuned on
validation and recorded in the run's ``metrics.json`` (``decision.threshold``), exactly as the task
scored its test split, and every label's probability. NER: the entities of each text as
``pipeline("token-classification", aggregation_strategy="simple")`` gives them (each sub-token's
most likely tag, adjacent tokens of one type grouped unless a ``B-`` tag starts a new one, the
group's score the mean of its tokens', ``O`` left out), with character offsets into the text as
given and the entity's text cut from it (the pipeline's ``word`` is the tokenizer's decoded form,
lower-cased by an uncased tokenizer). Texts are cut at ``model.max_length`` sub-tokens, where
training cut them. A causal LM: each prompt's greedy answer, as its run's test answers were generated.
Bi-encoded pairs: each text encoded alone, a regressor's cosine on its training
scores' range, a classifier's class and probabilities from its ``(u, v, |u - v|)`` head.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

Scorer = Callable[[pd.DataFrame, list[str], list[str] | None], pd.DataFrame]


def nested_columns(task_type: str) -> dict[str, Any]:
    """The output columns that hold lists, with their Parquet types (CSV and TSV get them as JSON text)."""
    import pyarrow as pa

    if task_type == "multilabel":
        return {"prediction": pa.list_(pa.string())}
    if task_type == "token_classification":
        entity = pa.struct([("text", pa.string()), ("type", pa.string()), ("start", pa.int64()),
                            ("end", pa.int64()), ("score", pa.float64())])
        return {"entities": pa.list_(entity)}
    return {}


def task_scorer(model_dir: Path, batch_size: int, bf16: bool) -> Scorer:
    """A multi-label or NER model kept as its run's files, scored by the run's own model and tokenizer
    in batches of similar length (:func:`ftlab.training.scoring.predict`)."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    from ftlab.core.record import read_record
    from ftlab.serving.export import load_promoted
    from ftlab.training.scoring import predict

    run_cfg, model, labels = load_promoted(model_dir)
    model = on_device(model)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir / "tokenizer"))
    collator, max_length = run_cfg.task_type().collator(tokenizer), run_cfg.model.max_length

    def logits(enc: Any) -> list[np.ndarray]:
        inputs = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
        return predict(model, Dataset.from_dict(inputs), collator, batch_size, bf16)

    if run_cfg.task.type == "multilabel":
        threshold = float(read_record(model_dir).decision.get("threshold", 0.5))

        def tag(frame: pd.DataFrame, texts: list[str], pairs: list[str] | None) -> pd.DataFrame:
            enc = tokenizer(texts, truncation=True, max_length=max_length, verbose=False)
            probs = 1.0 / (1.0 + np.exp(-np.stack(logits(enc)).astype(np.float64)))
            return with_labels(frame, probs, labels, threshold)

        return tag

    def entities(frame: pd.DataFrame, texts: list[str], pairs: list[str] | None) -> pd.DataFrame:
        enc = tokenizer(texts, truncation=True, max_length=max_length, return_offsets_mapping=True,
                        return_special_tokens_mask=True, verbose=False)
        rows = logits(enc)
        found = [grouped(text, enc["offset_mapping"][i], enc["special_tokens_mask"][i], rows[i], labels)
                 for i, text in enumerate(texts)]
        return frame.assign(entities=found)

    return entities


def bi_encoder_scorer(model_dir: Path, meta: dict, batch_size: int, bf16: bool) -> Scorer:
    """A bi-encoder export: each text of a pair encoded alone by ftlab's model over the exported weights
    (:func:`ftlab.serving.export.load_bi_encoder`), pairs batched by length as its run's test split was;
    a regressor's cosine on its training scores' range, a classifier's (u, v, |u - v|) head."""
    from datasets import Dataset

    from ftlab.learning.tasks.biencoder import PairCollator, predict_pairs, tokenize_pairs
    from ftlab.serving.export import load_bi_encoder

    model, tokenizer = load_bi_encoder(model_dir, meta)
    model, collator = on_device(model), PairCollator(tokenizer)

    def score(frame: pd.DataFrame, texts: list[str], pairs: list[str] | None) -> pd.DataFrame:
        enc = Dataset.from_dict(tokenize_pairs(texts, cast(list[str], pairs), tokenizer, meta["max_length"]))
        rows = predict_pairs(model, enc, collator, batch_size, bf16)
        return with_outputs(frame, rows, meta["task_type"] == "regression", meta["labels"])

    return score


def answer_scorer(model_dir: Path, batch_size: int, bf16: bool, max_new_tokens: int | None) -> Scorer:
    """A causal LM kept as its run's files: each prompt's greedy answer (``prediction``), the prompt
    rendered with the template its run trained with, at most ``max_new_tokens`` new tokens (default:
    the run's ``task.max_new_tokens``, what its test answers had), batched by prompt length. The model
    loads with the first chunk, once its prompts are checked: a decoder can take minutes to load."""
    from transformers import AutoTokenizer

    from ftlab.analysis.rundir import Run
    from ftlab.learning.generation import generate
    from ftlab.learning.tasks import DataError
    from ftlab.serving.export import load_promoted

    run_cfg = Run(model_dir).config
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir / "tokenizer"))
    if tokenizer.pad_token is None:  # as training loaded it (ftlab.learning.modeling.load_tokenizer)
        tokenizer.pad_token = tokenizer.eos_token
    task, max_length = run_cfg.task_type(), run_cfg.model.max_length
    limit = max_new_tokens or cast(Any, run_cfg.task).max_new_tokens  # the causal_lm options
    loaded: list[Any] = []

    def answers(frame: pd.DataFrame, texts: list[str], pairs: list[str] | None) -> pd.DataFrame:
        prompts = cast(Any, task).prompt_ids(texts, tokenizer)
        if too_long := [int(frame.index[i]) for i, ids in enumerate(prompts) if len(ids) >= max_length]:
            raise DataError(f"{len(too_long)} prompt(s) of {max_length} tokens or more (model.max_length of the run, "
                            f"which trained on none so long), e.g. rows {too_long[:5]}: shorten them")
        if not loaded:
            loaded.append(on_device(load_promoted(model_dir)[1]))
        order, out = np.argsort([len(ids) for ids in prompts], kind="stable"), [""] * len(prompts)
        for start in range(0, len(order), batch_size):
            rows = [int(i) for i in order[start : start + batch_size]]
            for i, ids in zip(rows, generate(loaded[0], tokenizer, [prompts[i] for i in rows], limit, bf16), strict=True):
                out[i] = tokenizer.decode(ids, skip_special_tokens=True).strip()
        return frame.assign(prediction=out)

    return answers


def on_device(model: Any) -> Any:
    """The model on the GPU where there is one."""
    import torch

    return model.cuda() if torch.cuda.is_available() else model


def with_outputs(frame: pd.DataFrame, outputs: list[np.ndarray], regression: bool, labels: list[str]) -> pd.DataFrame:
    """The rows plus a regressor's score in ``prediction``, or a classifier's class and probabilities
    (softmax over its logits, in float64)."""
    rows = np.stack(outputs).astype(np.float64)
    if regression:
        return frame.assign(prediction=rows[:, 0])
    exp = np.exp(rows - rows.max(-1, keepdims=True))
    return with_predictions(frame, exp / exp.sum(-1, keepdims=True), labels)


def with_predictions(df: pd.DataFrame, probs: np.ndarray, labels: list[str]) -> pd.DataFrame:
    """The input rows plus ``prediction`` (a label name), ``confidence`` and ``prob_<label>`` per class."""
    out = df.copy()
    out["prediction"] = np.asarray(labels, dtype=object)[probs.argmax(-1)]
    out["confidence"] = probs.max(-1)
    for i, name in enumerate(labels):
        out[f"prob_{name}"] = probs[:, i]
    return out


def with_labels(frame: pd.DataFrame, probs: np.ndarray, labels: list[str], threshold: float) -> pd.DataFrame:
    """The rows plus ``prediction`` (the labels at or above ``threshold``, in label order) and ``prob_<label>``."""
    names = np.asarray(labels, dtype=object)
    out = frame.assign(prediction=[list(names[row >= threshold]) for row in probs])
    return out.assign(**{f"prob_{name}": probs[:, i] for i, name in enumerate(labels)})


def grouped(text: str, offsets: list[tuple[int, int]], special: list[int], logits: np.ndarray,
            labels: list[str]) -> list[dict]:
    """One text's entities from its sub-tokens' logits, grouped as the pipeline's ``simple`` strategy does."""
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    scores = exp / exp.sum(-1, keepdims=True)
    groups: list[tuple[str, list[tuple[float, int, int]]]] = []  # (type, [(score, start, end) per sub-token])
    for i, row in enumerate(scores):
        if special[i]:
            continue
        best = int(row.argmax())
        name, (start, end) = labels[best], offsets[i]
        bi, kind = (name[0], name[2:]) if name[:2] in ("B-", "I-") else ("I", name)
        if groups and groups[-1][0] == kind and bi != "B":
            groups[-1][1].append((float(row[best]), start, end))
        else:
            groups.append((kind, [(float(row[best]), start, end)]))
    return [{"text": text[tokens[0][1] : tokens[-1][2]], "type": kind, "start": int(tokens[0][1]),
             "end": int(tokens[-1][2]), "score": float(np.mean([t[0] for t in tokens]))}
            for kind, tokens in groups if kind != "O"]
