"""``multilabel``: zero or more labels per text (emotions, topics, tags)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import Field

from ftlab.learning.tasks.base import DataError, Metric, label_set_targets, register, where
from ftlab.learning.tasks.sequence import SequenceOptions, SequenceTask, stack, with_probabilities
from ftlab.learning.tasks.statistics import F1Statistic

if TYPE_CHECKING:
    from torch import nn

    from ftlab.core.config import ModelConfig

# decision thresholds tried: fine at the low end, where 28 rare labels put most probabilities early in training
THRESHOLDS = np.round(np.concatenate([np.arange(0.01, 0.05, 0.01), np.arange(0.05, 0.96, 0.05)]), 2)


class MultilabelOptions(SequenceOptions):
    # a list column (JSONL/Parquet), or a delimited string such as "admiration,joy" (CSV/TSV)
    label_separator: str = Field(",", description="splits a label string into labels (\"admiration,joy\"); list columns need none")
    allow_empty: bool = Field(True, description="rows with no label at all (an empty string or list) are allowed")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _label_sets(column: pd.Series, separator: str, split: str) -> list[list[str]]:
    """Each row's labels as a list of names, from a list column or a delimited string."""
    out = []
    for i, value in column.items():
        if isinstance(value, (list, tuple, np.ndarray)):
            names = [str(v).strip() for v in value]
        elif isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    names = [str(v).strip() for v in json.loads(text)]
                except json.JSONDecodeError as e:
                    raise DataError(f"{split}: row {i}: labels {value!r} are not a JSON list ({e.msg})") from None
            else:
                names = [n.strip() for n in text.split(separator)] if text else []
        elif value is None or (isinstance(value, float) and np.isnan(value)):
            names = []
        else:
            names = [str(value)]
        out.append([n for n in names if n])
    return out


def _counts(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-label (tp, fp, fn) over rows, each of shape (labels,)."""
    return (y & p).sum(0), (~y & p).sum(0), (y & ~p).sum(0)


def _best_threshold(y: np.ndarray, probs: np.ndarray) -> tuple[float, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The threshold of THRESHOLDS with the best micro-F1, and its per-label (tp, fp, fn)."""
    counts = [_counts(y, probs >= t) for t in THRESHOLDS]
    best = int(np.argmax([_f1(tp.sum(), fp.sum(), fn.sum()) for tp, fp, fn in counts]))
    return float(THRESHOLDS[best]), counts[best]


def _f1(tp: Any, fp: Any, fn: Any) -> Any:
    denominator = 2 * tp + fp + fn
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


@register
class Multilabel(SequenceTask):
    name = "multilabel"
    summary = "zero or more labels per text: sigmoid + BCE, micro-F1 (primary), macro-F1, threshold tuned on validation"
    Options = MultilabelOptions
    problem_type = "multi_label_classification"
    metrics = (Metric("micro_f1", "micro-F1"), Metric("macro_f1", "macro-F1"))
    statistic = F1Statistic("micro_f1", "micro-F1")
    calibrated = True

    def validation_targets(self, label: pd.Series) -> tuple[dict[str, Any], pd.Series | None]:
        return label_set_targets(label)

    def check_rows(self, df: pd.DataFrame, split: str) -> None:
        """Also, with ``task.allow_empty: false``, no row without labels: refused where the file is read
        (prepare, ingest), by line."""
        super().check_rows(df.assign(label=df["label"].fillna("")), split)  # an empty cell: a row without labels
        if not self.opts.allow_empty:
            empty = pd.Series([not row for row in self.label_sets(df, split)], index=df.index)
            if empty.any():
                raise DataError(f"{split}: {int(empty.sum())} row(s) without any label, e.g. {where(df, empty)} "
                                "(set task.allow_empty: true if that is meant)")

    def unlabelled(self, df: pd.DataFrame) -> pd.Series:
        """None: a missing value is a row with no label (an empty cell), as training reads it."""
        return pd.Series(False, index=df.index)

    def label_sets(self, df: pd.DataFrame, split: str) -> list[list[str]]:
        return _label_sets(df["label"], self.opts.label_separator, split)

    def encode(self, splits: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], list[str]]:
        opts = self.opts
        sets = {s: _label_sets(df["label"], opts.label_separator, s) for s, df in splits.items()}
        known = {n for row in sets["train"] for n in row}
        names = sorted(known)
        if len(names) < 2:
            raise DataError(f"train: {len(names)} distinct label(s); multilabel needs at least 2")
        ids = {n: i for i, n in enumerate(names)}
        out = {}
        for split, rows in sets.items():
            unknown = sorted({n for row in rows for n in row} - known)
            if unknown:
                raise DataError(f"{split}: labels {unknown[:5]} do not occur in train (known: {names[:10]}...)")
            empty = [i for i, row in zip(splits[split].index, rows, strict=True) if not row]
            if empty and not opts.allow_empty:
                raise DataError(f"{split}: {len(empty)} row(s) without any label, e.g. rows {empty[:5]} "
                                "(set task.allow_empty: true if that is meant)")
            out[split] = self.frame(splits[split]).assign(label=[sorted(ids[n] for n in set(row)) for row in rows])
        return out, names

    def _multi_hot(self, df: pd.DataFrame, n: int) -> np.ndarray:
        y = np.zeros((len(df), n), dtype=bool)
        for i, ids in enumerate(df["label"]):
            y[i, list(ids)] = True
        return y

    def targets(self, df: pd.DataFrame, labels: list[str]) -> np.ndarray:
        return self._multi_hot(df, len(labels)).astype(np.float32)

    def build_model(self, cfg: ModelConfig, labels: list[str], train: pd.DataFrame | None = None) -> nn.Module:
        """The head's biases start at each label's log-odds in train: with 28 mostly rare labels, a
        zero bias (every label at 0.5) spends the first hundreds of steps learning only the label
        prior, and a short run ends there (GoEmotions on 3,000 rows: micro-F1 at the prior's 0.30)."""
        import torch

        model = super().build_model(cfg, labels, train)
        output = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == len(labels)][-1]
        if train is not None and output.bias is not None:
            prior = self._multi_hot(train, len(labels)).mean(0).clip(1e-4, 1 - 1e-4)
            with torch.no_grad():
                output.bias.copy_(torch.from_numpy(np.log(prior / (1 - prior))))
        return model

    def eval_metrics(self, logits: np.ndarray, label_ids: np.ndarray, labels: list[str]) -> dict[str, float]:
        """Micro- and macro-F1 at the threshold best for this evaluation, as the final model will be
        used (calibrated): at a fixed 0.5, micro-F1 stays 0 for hundreds of steps while no label is
        that likely yet, and early stopping would keep the untrained weights."""
        y = label_ids > 0.5
        _, counts = _best_threshold(y, _sigmoid(logits))
        tp, fp, fn = counts
        return {"micro_f1": float(_f1(tp.sum(), fp.sum(), fn.sum())), "macro_f1": float(_f1(tp, fp, fn).mean())}

    def calibrate(self, validation: pd.DataFrame, logits: list[np.ndarray], labels: list[str]) -> dict:
        """The one decision threshold that maximises validation micro-F1."""
        threshold, (tp, fp, fn) = _best_threshold(self._multi_hot(validation, len(labels)), _sigmoid(stack(logits)))
        return {"threshold": threshold, "validation_micro_f1": float(_f1(tp.sum(), fp.sum(), fn.sum()))}

    def predictions(self, df: pd.DataFrame, logits: list[np.ndarray], labels: list[str], decision: dict) -> pd.DataFrame:
        probs = _sigmoid(stack(logits))
        chosen = probs >= decision.get("threshold", 0.5)
        out = self.frame(df).assign(label=list(df["label"]), prediction=[list(np.flatnonzero(r)) for r in chosen])
        return with_probabilities(out, probs, labels)

    def _arrays(self, predictions: pd.DataFrame, n: int) -> tuple[np.ndarray, np.ndarray]:
        p = np.zeros((len(predictions), n), dtype=bool)
        for i, ids in enumerate(predictions["prediction"]):
            p[i, list(ids)] = True
        return self._multi_hot(predictions, n), p

    def test_metrics(self, predictions: pd.DataFrame, labels: list[str]) -> dict:
        y, p = self._arrays(predictions, len(labels))
        tp, fp, fn = _counts(y, p)
        per_label = _f1(tp, fp, fn)
        return {"micro_f1": float(_f1(tp.sum(), fp.sum(), fn.sum())), "macro_f1": float(per_label.mean()),
                "subset_accuracy": float((y == p).all(1).mean()),
                "per_label": {name: {"f1": float(per_label[i]), "support": int(y[:, i].sum())}
                              for i, name in enumerate(labels)}}

    def example_scores(self, predictions: pd.DataFrame, labels: list[str]) -> np.ndarray:
        y, p = self._arrays(predictions, len(labels))
        return np.stack([(y & p).sum(1), (~y & p).sum(1), (y & ~p).sum(1)], axis=1).astype(float)

    def trivial(self, train: pd.DataFrame, test: pd.DataFrame, labels: list[str]) -> tuple[str, pd.DataFrame]:
        common = max(train["label"].map(tuple).value_counts().items(), key=lambda kv: kv[1])[0]
        logits = [np.where(np.isin(np.arange(len(labels)), common), 10.0, -10.0)] * len(test)
        return "most_frequent_label_set", self.predictions(test, logits, labels, {})
