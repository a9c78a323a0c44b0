"""Batch inference with a promoted model: ``ftlab predict --model DIR --input FILE``.

Input is read by the training readers' rules, in chunks (:mod:`ftlab.serving.intake`), so memory
stays bounded by the chunk, not the file; the first chunk is read, and its texts checked, before
the model loads (seconds), so a file that cannot be scored fails at once. Within a chunk the texts are
tokenized at once, scored in batches of similar length (little padding) and put back in input
order. Output goes to a temporary sibling file, renamed over ``--output`` only when every row was
scored: a failure leaves no half-written file and an earlier output untouched.

Served so far: classifiers and regressors of single texts or pairs, cross- or bi-encoded (an exported
classifier or bi-encoder, or a model promoted as its run's files), multi-label taggers and NER models
(:mod:`ftlab.serving.scorers`); any other model is refused by name in :func:`read_meta`, before its
input is read.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
from torch import nn

from ftlab.data.readers import SUFFIXES as READERS
from ftlab.learning.tasks import TASKS, DataError
from ftlab.serving.intake import CHUNK_ROWS, Chunk, read_chunks, texts_of
from ftlab.serving.scorers import on_device, with_outputs, with_predictions

log = logging.getLogger(__name__)


# how a promoted directory of each layout loads without ftlab, for the refusal of a task ftlab does not train
LOADED_BY = {"ftlab": "load it with ftlab.analysis.runs.load_run",
             "bi-encoder": "load it with sentence_transformers.SentenceTransformer (its README.md says how)"}


def model_kind(meta: dict) -> str:
    """What a promoted model does, in words: its task and, for pairs, how it reads them."""
    encoding = meta.get("pair_encoding") or ("cross" if meta.get("text_pair_column") else None)
    pair = {"bi": " (bi-encoder pair)", "cross": " (cross-encoder pair)"}.get(str(encoding), "")
    return f"{meta.get('task_type')}{pair}"


def read_meta(model_dir: Path, command: str = "predict") -> dict:
    """``ftlab.json`` of a promoted model directory, with an error that says how to make one; a model
    of a task ftlab does not train (a directory a later version wrote) is refused by name here, before
    any input is read (its labels would otherwise be judged against the wrong kind of model)."""
    model_dir = Path(model_dir)
    path = model_dir / "ftlab.json"
    if not model_dir.exists():
        raise DataError(f"model directory not found: {model_dir}. `make run` (or `dvc repro`) trains, compares and "
                        "promotes one to models/ftlab-model; `ftlab promote` promotes after `ftlab compare`")
    if not path.is_file():
        raise DataError(f"{model_dir}: not a promoted ftlab model (it has no ftlab.json); promote one with `make run` "
                        "(or `dvc repro`), or `ftlab promote` after `ftlab compare`")
    meta = json.loads(path.read_text())
    if meta.get("task_type") not in TASKS:
        how = LOADED_BY.get(meta.get("layout", ""), "its README.md says how to load it")
        raise DataError(f"{model_dir}: ftlab {command} serves the tasks ftlab trains ({', '.join(TASKS)}); this "
                        f"model is a {model_kind(meta)} model: {how}")
    return meta


def default_text_column(meta: dict, header: bool) -> str:
    """The column to score when none is named: the training text column (a causal LM's: its prompt
    column), or column 1 without a header. An NER model trained on lists of words reads raw texts,
    ``text`` by default."""
    if not header:
        return "1"
    return "text" if meta.get("task_type") == "token_classification" else meta["text_column"]


def pair_column(meta: dict, named: str | None, header: bool) -> str | None:
    """The column of second texts for a pair model: the one named, else the training one (column 2
    without a header); None for a model of single texts, which a named column would not fit."""
    if not meta.get("text_pair_column"):
        if named is not None:
            raise DataError(f"--text-pair-column {named}: this model reads single texts ({model_kind(meta)}); "
                            "leave --text-pair-column out")
        return None
    return named or (meta["text_pair_column"] if header else "2")


@torch.inference_mode()
def class_probabilities(model: nn.Module, tokenizer: Any, texts: list[str], batch_size: int,
                        max_length: int, bf16: bool) -> np.ndarray:
    """Softmax over the classes for each text, in input order; batches sorted by token length."""
    device = next(model.parameters()).device
    num_labels = int(cast(Any, model).config.num_labels)
    ids = tokenizer(texts, truncation=True, max_length=max_length, verbose=False)["input_ids"]
    order = np.argsort([len(x) for x in ids], kind="stable")
    pad = tokenizer.pad_token_id or 0
    out = np.empty((len(texts), num_labels), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = max(len(ids[i]) for i in rows)
        batch = np.full((len(rows), width), pad, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for j, i in enumerate(rows):
            batch[j, : len(ids[i])] = ids[i]
            mask[j, : len(ids[i])] = 1
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=torch.from_numpy(batch).to(device), attention_mask=torch.from_numpy(mask).to(device)).logits
        out[rows] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    return out


Scorer = Callable[[pd.DataFrame, list[str], list[str] | None], pd.DataFrame]


def load_scorer(model_dir: Path, meta: dict, batch_size: int, bf16: bool, max_new_tokens: int | None = None) -> Scorer:
    """What scores a chunk (its rows, texts and second texts, if pairs): the rows plus the prediction
    columns. An exported classifier scores with :func:`class_probabilities`; run files (layout
    ``ftlab``) with :func:`_run_files_scorer`; other tasks with :mod:`ftlab.serving.scorers`."""
    if meta["task_type"] == "causal_lm":
        from ftlab.serving.scorers import answer_scorer

        return answer_scorer(model_dir, batch_size, bf16, max_new_tokens)
    if meta["task_type"] in ("multilabel", "token_classification"):
        from ftlab.serving.scorers import task_scorer

        return task_scorer(model_dir, batch_size, bf16)
    if meta["layout"] == "ftlab":
        return _run_files_scorer(model_dir, batch_size, bf16)
    if meta["layout"] == "bi-encoder":
        from ftlab.serving.scorers import bi_encoder_scorer

        return bi_encoder_scorer(model_dir, meta, batch_size, bf16)
    from ftlab.serving.export import load_exported

    model, tokenizer = load_exported(model_dir, meta)
    model = on_device(model)

    def classify(frame: pd.DataFrame, texts: list[str], pairs: list[str] | None) -> pd.DataFrame:
        probs = class_probabilities(model, tokenizer, texts, batch_size, meta["max_length"], bf16)
        return with_predictions(frame, probs, meta["labels"])

    return classify


def _run_files_scorer(model_dir: Path, batch_size: int, bf16: bool) -> Scorer:
    """A classifier or regressor of texts or cross-encoded pairs kept as its run's files: the run's own
    model, tokenizer and collator, each text (or pair) tokenized as its test split was and batched by
    length (:func:`ftlab.training.scoring.predict`), so the scores are the run's on the same rows."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    from ftlab.analysis.runs import load_run
    from ftlab.training.scoring import predict

    run_cfg, model, labels = load_run(model_dir)
    model = on_device(model)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir / "tokenizer"))
    collator, regression = run_cfg.task_type().collator(tokenizer), run_cfg.task.type == "regression"

    def score(frame: pd.DataFrame, texts: list[str], pairs: list[str] | None) -> pd.DataFrame:
        enc = tokenizer(texts, pairs, truncation=True, max_length=run_cfg.model.max_length, verbose=False)
        return with_outputs(frame, predict(model, Dataset.from_dict(dict(enc)), collator, batch_size, bf16),
                            regression, labels)

    return score


class ChunkWriter:
    """Appends chunks to a temporary file in the output's format; ``commit`` renames it into place.
    ``nested``: columns of lists and their Parquet types (given, so that a first chunk of empty lists
    does not fix a type later chunks break), written as JSON text to CSV and TSV."""

    def __init__(self, path: Path, nested: dict[str, Any] | None = None):
        self.path, self.suffix = Path(path), Path(path).suffix.lower()
        if self.suffix not in READERS:
            raise DataError(f"--output {path}: unsupported file type {self.suffix!r}; use one of {sorted(READERS)}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.parquet: Any = None
        self.first, self.nested = True, nested or {}

    def write(self, df: pd.DataFrame) -> None:
        if self.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            flat = pa.Table.from_pandas(df.drop(columns=list(self.nested)), preserve_index=False)
            table = pa.table({c: pa.array(df[c].tolist(), type=self.nested[c]) if c in self.nested else flat[c]
                              for c in df.columns})
            if self.parquet is None:
                self.parquet = pq.ParquetWriter(self.tmp, table.schema)
            self.parquet.write_table(table)
        elif self.suffix in (".jsonl", ".json"):
            with open(self.tmp, "a", encoding="utf-8") as f:
                df.to_json(f, orient="records", lines=True, force_ascii=False)
        else:
            df = df.assign(**{c: [json.dumps(v, ensure_ascii=False) for v in df[c]] for c in self.nested})
            sep = {"sep": "\t", "quoting": csv.QUOTE_NONE, "escapechar": "\\"} if self.suffix == ".tsv" else {}
            df.to_csv(self.tmp, mode="w" if self.first else "a", header=self.first, index=False, **sep)
        self.first = False

    def commit(self) -> None:
        if self.parquet is not None:
            self.parquet.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        if self.parquet is not None:
            self.parquet.close()
        self.tmp.unlink(missing_ok=True)


def _rows(path: Path) -> int | None:
    """Row count for the progress bar where it is free (Parquet metadata); None otherwise."""
    if path.suffix.lower() != ".parquet" or not path.is_file():
        return None
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def predict_file(model_dir: Path, input_path: Path, output: Path, text_column: str | None = None,
                 batch_size: int = 128, precision: str = "auto", chunk_rows: int = CHUNK_ROWS,
                 header: bool = True, text_pair_column: str | None = None, max_new_tokens: int | None = None) -> dict:
    """Score every row of ``input_path`` with the promoted model in ``model_dir``; write ``output``.
    A pair model reads its second texts from ``text_pair_column`` (default: its training column); a
    causal LM answers in at most ``max_new_tokens`` tokens (default: its run's ``task.max_new_tokens``)."""
    model_dir, input_path, output = Path(model_dir), Path(input_path), Path(output)
    if os.path.realpath(output) == os.path.realpath(input_path):  # realpath: no error on a symbolic-link loop
        raise DataError(f"--output {output} is the input file: choose another path")
    meta = read_meta(model_dir)
    if max_new_tokens is not None and meta["task_type"] != "causal_lm":
        raise DataError(f"--max-new-tokens {max_new_tokens}: this model does not generate ({model_kind(meta)}); "
                        "leave --max-new-tokens out")
    column, pairs = text_column or default_text_column(meta, header), pair_column(meta, text_pair_column, header)
    chunks = read_chunks(input_path, chunk_rows, header, column, meta["label_column"] if header else "")
    first = next(chunks, None)  # the file is checked, and its first rows read, before the model loads (seconds)
    if first is None or not len(first.frame):
        raise DataError(f"{input_path}: no rows to score" + (" (a header alone)" if first is not None else ""))

    def inputs(chunk: Chunk) -> tuple[list[str], list[str] | None]:
        return texts_of(chunk, input_path, column, header), None if pairs is None else texts_of(chunk, input_path, pairs, header)

    inputs(first)
    from tqdm.auto import tqdm  # imported once the input is known good: transformers takes seconds

    from ftlab.training.trainer import use_bf16

    bf16 = use_bf16(precision)
    scorer = load_scorer(model_dir, meta, batch_size, bf16, max_new_tokens)
    from ftlab.serving.scorers import nested_columns

    writer, rows = ChunkWriter(output, nested_columns(meta["task_type"])), 0
    try:
        with tqdm(total=_rows(input_path), unit="rows", desc=f"predict {input_path.name}") as bar:
            for chunk in itertools.chain([first], chunks):
                writer.write(scorer(chunk.frame, *inputs(chunk)))
                rows += len(chunk.frame)
                bar.update(len(chunk.frame))
        writer.commit()
    except BaseException:
        writer.discard()
        raise
    log.info("scored %d rows of %s -> %s (%s)", rows, input_path, output, "bf16" if bf16 else "fp32")
    return {"rows": rows, "output": str(output), "precision": "bf16" if bf16 else "fp32"}
