"""``token_classification``: a BIO tag per word (named entities), scored per entity with seqeval.

Words are split into sub-word tokens by the tokenizer; the first sub-token of each word carries
the word's tag and the others are left out of the loss (-100), so each word is predicted once and
the predictions map back to the original words. Entity-level micro-F1 counts a hit only when
the span and the type both match (conlleval's rule, seqeval's default).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import Field

from ftlab.learning.tasks.base import DataError, Metric, Task, TaskOptions, label_set_targets, register
from ftlab.learning.tasks.statistics import F1Statistic

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ftlab.core.config import ModelConfig

log = logging.getLogger(__name__)
BIO = re.compile(r"^(O|[BI]-\S+)$")
CONLL_SUFFIXES = (".conll", ".txt", ".iob", ".bio")


class TokenOptions(TaskOptions):
    text_column: str = Field("tokens", description="a list column of words (JSONL/Parquet)")
    label_column: str = Field("tags", description="a list column of BIO tags, one per word")
    conll_tag_index: int = Field(-1, description="CoNLL column files: which whitespace-separated column holds the tag")


def read_conll(path: Path, tag_index: int = -1) -> pd.DataFrame:
    """A CoNLL column file (one ``token ... tag`` line per word, blank lines between sentences), with
    each sentence's ``origin`` (``path:line`` of its first word), so later errors name the line."""
    rows: list[tuple[list[str], list[str], str]] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = ""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields or fields[0] == "-DOCSTART-":
                if tokens:
                    rows.append((tokens, tags, start))
                tokens, tags = [], []
                continue
            if len(fields) < 2:
                raise DataError(f"{path}:{number}: expected 'token ... tag' columns, got {line.strip()!r}")
            if not tokens:
                start = f"{path}:{number}"
            tokens.append(fields[0])
            tags.append(fields[tag_index])
    if tokens:
        rows.append((tokens, tags, start))
    return pd.DataFrame({"tokens": [r[0] for r in rows], "label": [r[1] for r in rows], "origin": [r[2] for r in rows]})


def _as_list(value: Any, what: str, split: str, row: Any) -> list[str]:
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(v) for v in value]
    raise DataError(f"{split}: {row}: {what} must be a list (JSONL/Parquet list column or a CoNLL file), "
                    f"got {type(value).__name__} {str(value)[:40]!r}")


@register
class TokenClassification(Task):
    name = "token_classification"
    summary = "a BIO tag per word (NER) from CoNLL or list columns: entity-level micro-F1 (seqeval)"
    Options = TokenOptions
    peft_task_type = "TOKEN_CLS"
    file_suffixes = CONLL_SUFFIXES
    metrics = (Metric("f1", "entity micro-F1"), Metric("precision", "entity precision"),
               Metric("recall", "entity recall"))
    statistic = F1Statistic("f1", "entity micro-F1")

    def validation_targets(self, label: pd.Series) -> tuple[dict[str, Any], pd.Series | None]:
        return label_set_targets(label)

    def source_columns(self) -> dict[str, str]:
        return {"tokens": self.opts.text_column, "label": self.opts.label_column}

    def read_file(self, path: Path) -> pd.DataFrame:
        return read_conll(path, self.opts.conll_tag_index)

    def check_rows(self, df: pd.DataFrame, split: str) -> None:
        """Every sentence a list of words with one BIO tag each; refused naming its line where known."""
        origins = df["origin"] if "origin" in df else pd.Series(None, index=df.index, dtype=object)
        for row, tokens, tags, origin in zip(df.index, df["tokens"], df["label"], origins, strict=True):
            at = f"the sentence at {origin}" if isinstance(origin, str) else f"row {row}"
            tokens, tags = _as_list(tokens, "tokens", split, at), _as_list(tags, "tags", split, at)
            if not tokens:
                raise DataError(f"{split}: {at}: a sentence without tokens")
            if len(tokens) != len(tags):
                raise DataError(f"{split}: {at}: {len(tokens)} tokens but {len(tags)} tags")
            bad = next((i for i, t in enumerate(tags) if not BIO.match(t)), None)
            if bad is not None:
                raise DataError(f"{split}: {at}: tag {tags[bad]!r} of word {bad + 1} ({tokens[bad]!r}) is not a "
                                "BIO tag (O, B-TYPE or I-TYPE)")

    def label_sets(self, df: pd.DataFrame, split: str) -> list[list[str]]:
        return [[str(t) for t in tags] for tags in df["label"]]

    def encode(self, splits: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], list[str]]:
        known = {t for tags in splits["train"]["label"] for t in tags}
        names = ["O", *sorted(known - {"O"})]
        ids = {n: i for i, n in enumerate(names)}
        out = {}
        for split, df in splits.items():
            unknown = sorted({t for tags in df["label"] for t in tags} - set(ids))
            if unknown:
                raise DataError(f"{split}: tags {unknown[:5]} do not occur in train (known: {names})")
            tokens = [list(map(str, t)) for t in df["tokens"]]
            out[split] = pd.DataFrame({"text": [" ".join(t) for t in tokens], "tokens": tokens,
                                       "label": [[ids[t] for t in tags] for tags in df["label"]]})
        return out, names

    def tokenize(self, df: pd.DataFrame, tokenizer: Any, max_length: int, labels: list[str]) -> Any:
        """Sub-word ids with each word's tag on its first sub-token (-100 elsewhere), and
        ``word_ids`` (the word index at those positions, -1 elsewhere) to map predictions back."""
        from datasets import Dataset

        enc = tokenizer([list(t) for t in df["tokens"]], is_split_into_words=True, truncation=True, max_length=max_length)
        aligned, words, cut = [], [], 0
        for i, tags in enumerate(df["label"]):
            word_ids, previous = enc.word_ids(i), None
            row_tags, row_words = [], []
            for w in word_ids:
                first = w is not None and w != previous
                row_tags.append(int(tags[w]) if first else -100)
                row_words.append(w if first else -1)
                previous = w
            cut += max((w for w in word_ids if w is not None), default=-1) + 1 < len(tags)
            aligned.append(row_tags)
            words.append(row_words)
        if cut:
            log.warning("%d sentence(s) longer than model.max_length=%d sub-tokens were truncated: their "
                        "last words are predicted O", cut, max_length)
        return Dataset.from_dict({**enc, "labels": aligned, "word_ids": words})

    def collator(self, tokenizer: Any, pad_to_multiple_of: int | None = None) -> Any:
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=pad_to_multiple_of)

    def build_model(self, cfg: ModelConfig, labels: list[str], train: pd.DataFrame | None = None) -> nn.Module:
        from ftlab.learning.modeling import build_token_model

        return build_token_model(cfg, labels)

    def reduce_logits(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Tag ids, not logits, kept during evaluation; the last positions when peft prepended virtual tokens."""
        return logits[:, -labels.shape[1] :].argmax(-1)

    def align(self, dataset: Any, logits: list[np.ndarray]) -> list[np.ndarray]:
        """Per sentence, one logit vector per word (a word cut off by truncation gets a sure O)."""
        out = []
        for row, word_ids, tokens in zip(logits, dataset["word_ids"], dataset["input_ids"], strict=True):
            row = row[-len(tokens) :]
            n_words = max(word_ids, default=-1) + 1
            per_word = np.full((n_words, row.shape[-1]), -1e4, dtype=np.float32)
            per_word[:, 0] = 0.0
            for position, w in enumerate(word_ids):
                if w >= 0:
                    per_word[w] = row[position]
            out.append(per_word)
        return out

    def eval_metrics(self, logits: np.ndarray, label_ids: np.ndarray, labels: list[str]) -> dict[str, float]:
        keep = label_ids != -100
        gold = [[labels[t] for t in row[m]] for row, m in zip(label_ids, keep, strict=True)]
        pred = [[labels[t] for t in row[m]] for row, m in zip(logits, keep, strict=True)]
        return _entity_scores(gold, pred)

    def predictions(self, df: pd.DataFrame, logits: list[np.ndarray], labels: list[str], decision: dict) -> pd.DataFrame:
        pred = [list(row.argmax(-1)) for row in logits]
        pred = [p + [0] * (len(t) - len(p)) for p, t in zip(pred, df["tokens"], strict=True)]  # truncated words: O
        return pd.DataFrame({"text": df["text"].to_numpy(), "tokens": list(df["tokens"]),
                             "label": list(df["label"]), "prediction": [[int(x) for x in p] for p in pred]})

    def _tags(self, predictions: pd.DataFrame, labels: list[str]) -> tuple[list[list[str]], list[list[str]]]:
        names = dict(enumerate(labels))
        return ([[names[t] for t in row] for row in predictions["label"]],
                [[names[t] for t in row] for row in predictions["prediction"]])

    def test_metrics(self, predictions: pd.DataFrame, labels: list[str]) -> dict:
        from seqeval.metrics import classification_report

        gold, pred = self._tags(predictions, labels)
        report = classification_report(gold, pred, output_dict=True, zero_division=0)
        per_type = {k: {"precision": float(v["precision"]), "recall": float(v["recall"]),
                        "f1": float(v["f1-score"]), "support": int(v["support"])}
                    for k, v in report.items() if not k.endswith(" avg")}
        return {**_entity_scores(gold, pred), "per_type": per_type}

    def example_scores(self, predictions: pd.DataFrame, labels: list[str]) -> np.ndarray:
        from seqeval.metrics.sequence_labeling import get_entities

        gold, pred = self._tags(predictions, labels)
        counts = []
        for g, p in zip(gold, pred, strict=True):
            ge, pe = set(get_entities(g)), set(get_entities(p))
            counts.append((len(ge & pe), len(pe - ge), len(ge - pe)))
        return np.asarray(counts, dtype=float)

    def drift_columns(self, predictions: pd.DataFrame, labels: list[str]) -> tuple[dict, list[str]]:
        """Tagged (non-O) words per sentence, gold and predicted."""
        return {f"{c}_count": predictions[c].map(lambda tags: sum(t != 0 for t in tags)).to_numpy()
                for c in ("label", "prediction")}, []

    def trivial(self, train: pd.DataFrame, test: pd.DataFrame, labels: list[str]) -> tuple[str, pd.DataFrame]:
        logits = [np.eye(len(labels))[np.zeros(len(t), dtype=int)] for t in test["tokens"]]
        return "all_O", self.predictions(test, logits, labels, {})


def _entity_scores(gold: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
    from seqeval.metrics import f1_score, precision_score, recall_score

    return {"f1": float(f1_score(gold, pred, zero_division=0)),
            "precision": float(precision_score(gold, pred, zero_division=0)),
            "recall": float(recall_score(gold, pred, zero_division=0))}
