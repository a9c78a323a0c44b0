"""``classification``: one label per text or text pair (sentiment, topic, NLI, paraphrase)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ftlab.learning.tasks.base import DataError, Metric, register
from ftlab.learning.tasks.pairs import PairTask
from ftlab.learning.tasks.sequence import stack, with_probabilities
from ftlab.learning.tasks.statistics import MeanStatistic


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _numeric(values: np.ndarray) -> bool:
    return pd.api.types.is_numeric_dtype(pd.Series(values))


@register
class Classification(PairTask):
    name = "classification"
    summary = ("one label per text or text pair (text_pair_column; pair_encoding cross or bi): softmax + "
               "cross-entropy, accuracy")
    metrics = (Metric("accuracy", "accuracy"), Metric("macro_f1", "macro-F1"))
    statistic = MeanStatistic("accuracy", "accuracy")
    class_labels = True
    balanced_classes = True
    demo_data = True

    def exportable(self) -> bool:
        """Single texts export to transformers or sentence-transformers; so do bi-encoded pairs."""
        return self.opts.text_pair_column is None or super().exportable()

    def pipeline_tag(self) -> str:
        return "text-classification"

    def validation_targets(self, label: pd.Series) -> tuple[dict[str, Any], pd.Series | None]:
        return {"label": label}, label

    def stratify(self, df: pd.DataFrame) -> pd.Series | None:
        return df["label"] if df["label"].value_counts().min() >= 2 else None

    def encode(self, splits: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], list[str]]:
        values = pd.unique(splits["train"]["label"])
        if len(values) < 2:
            raise DataError(f"train: a single class ({values[0]!r}); classification needs at least 2")
        names = [str(v) for v in sorted(values)] if _numeric(values) else sorted(str(v) for v in values)
        ids = {name: i for i, name in enumerate(names)}
        out = {}
        for split, df in splits.items():
            unknown = sorted(set(df["label"].astype(str)) - set(ids))
            if unknown:
                raise DataError(f"{split}: labels {unknown[:5]} do not occur in train (known: {names})")
            out[split] = self.frame(df).assign(label=df["label"].astype(str).map(ids).to_numpy())
        return out, names

    def eval_metrics(self, logits: np.ndarray, label_ids: np.ndarray, labels: list[str]) -> dict[str, float]:
        from ftlab.learning.metrics import classification_metrics

        return classification_metrics(label_ids, logits.argmax(-1))

    def predictions(self, df: pd.DataFrame, logits: list[np.ndarray], labels: list[str], decision: dict) -> pd.DataFrame:
        probs = _softmax(stack(logits))
        out = self.frame(df).assign(label=df["label"].to_numpy(), prediction=probs.argmax(-1))
        return with_probabilities(out, probs, labels)

    def test_metrics(self, predictions: pd.DataFrame, labels: list[str]) -> dict:
        from ftlab.learning.metrics import classification_metrics

        y, prediction = predictions["label"].to_numpy(), predictions["prediction"].to_numpy()
        probs = predictions[[f"prob_{n}" for n in labels]].to_numpy()
        loss = float(-np.log(probs[np.arange(len(y)), y] + 1e-12).mean())
        return {**classification_metrics(y, prediction, labels=labels), "test_loss": loss}

    def example_scores(self, predictions: pd.DataFrame, labels: list[str]) -> np.ndarray:
        return (predictions["prediction"] == predictions["label"]).to_numpy(dtype=float)[:, None]

    def drift_columns(self, predictions: pd.DataFrame, labels: list[str]) -> tuple[dict, list[str]]:
        # class names, not ids: Evidently 0.7.23 fails on ids mapped to names through ``labels=``
        names = dict(enumerate(labels))
        return {c: predictions[c].map(names).to_numpy() for c in ("label", "prediction")}, ["label", "prediction"]

    def trivial(self, train: pd.DataFrame, test: pd.DataFrame, labels: list[str]) -> tuple[str, pd.DataFrame]:
        majority = int(train["label"].value_counts().idxmax())
        logits = [np.log(np.eye(len(labels))[majority] + 1e-12)] * len(test)
        return "majority_class", self.predictions(test, logits, labels, {})
