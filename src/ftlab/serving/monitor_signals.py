"""The monitor's signals, whatever the task: each scores one way the new rows differ from the reference.

- text descriptors of every text column (both texts of a pair, each named after its column):
  length in characters, the tokenizer's pieces per word, the share of non-letter characters;
- per-row outputs: numeric ones (confidence, a regressor's predicted score, labels or entities per
  text) by normed Wasserstein distance, categorical ones (the predicted class) by Jensen-Shannon
  distance, both through one Evidently report, whose HTML plots them;
- predicted sets (a multi-label tagger's labels, an NER model's entity types): Jensen-Shannon
  distance between the shares of everything predicted on each side, with each name's rate per text;
- with labels, the drop of the task's primary metric below the promoted run's test value, beyond
  ``monitor.max_accuracy_drop`` and the sampling noise of a batch this size (2.33 standard errors:
  one-sided 99%).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ftlab.learning.tasks.base import Metric
from ftlab.learning.tasks.statistics import MeanStatistic, Statistic

if TYPE_CHECKING:
    from ftlab.core.config import MonitorConfig

Z_ONE_SIDED_99 = 2.33
RESAMPLES = 1000


@dataclass(frozen=True)
class Layout:
    """The monitored columns of both sides' frames: text columns (with the prefix their descriptors
    are named with: "" for a single text, else the column's name and a dot), numeric and categorical
    outputs, and whether Evidently's classification quality applies (labelled classes)."""

    texts: dict[str, str]
    numeric: tuple[str, ...]
    categorical: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()  # the class names, when labelled classes are judged by Evidently too


def word_pieces(texts: list[str], tokenizer: Any) -> list[float]:
    """Per text, the tokenizer's pieces per word (its pre-tokenizer's words: punctuation counts as a
    word of one piece); 0.0 for a text with no word."""
    encoded = tokenizer(list(texts), add_special_tokens=False, verbose=False)
    out = []
    for i in range(len(texts)):
        words = [w for w in encoded.word_ids(i) if w is not None]
        out.append(len(words) / len(set(words)) if words else 0.0)
    return out


def numeric_columns(layout: Layout) -> list[str]:
    """Every numeric signal's column: the text descriptors per text column, then the outputs."""
    per_text = [f"{prefix}{name}" for prefix in layout.texts.values()
                for name in ("text_length", "word_pieces", "non_letter_share")]
    return [*per_text, *layout.numeric]


def evidently_report(reference: pd.DataFrame, current: pd.DataFrame, cfg: MonitorConfig, layout: Layout) -> Any:
    """The Evidently snapshot over both sides: descriptor and output drift, class quality with labels."""
    from evidently import BinaryClassification, DataDefinition, Dataset, MulticlassClassification, Report
    from evidently.descriptors import NonLetterCharacterPercentage, TextLength
    from evidently.metrics import ValueDrift
    from evidently.presets import ClassificationPreset

    quality = bool(layout.classes) and "label" in current.columns
    labels = layout.classes
    task = (BinaryClassification(target="label", prediction_labels="prediction", pos_label=labels[1])
            if len(labels) == 2 else MulticlassClassification(target="label", prediction_labels="prediction"))
    pieces = [f"{prefix}word_pieces" for prefix in layout.texts.values()]
    definition = DataDefinition(
        text_columns=list(layout.texts), numerical_columns=[*pieces, *layout.numeric],
        categorical_columns=[*layout.categorical, *(["label"] if quality else [])],
        classification=[task] if quality else None)
    descriptors: list[Any] = []
    for column, prefix in layout.texts.items():
        descriptors += [TextLength(column, alias=f"{prefix}text_length"),
                        NonLetterCharacterPercentage(column, alias=f"{prefix}non_letter_share")]
    metrics: list[Any] = [ValueDrift(column=c, method="wasserstein", threshold=cfg.numeric_threshold)
                          for c in numeric_columns(layout)]
    metrics += [ValueDrift(column=c, method="jensenshannon", threshold=cfg.category_threshold) for c in layout.categorical]
    if quality:
        metrics.append(ClassificationPreset())

    def dataset(df: pd.DataFrame) -> Any:
        columns = [*layout.texts, *pieces, *layout.numeric, *layout.categorical, *(["label"] if quality else [])]
        return Dataset.from_pandas(df[columns], data_definition=definition, descriptors=descriptors)

    with np.errstate(invalid="ignore", divide="ignore"):
        return Report(metrics).run(dataset(current), dataset(reference))


def drift_signals(snapshot: Any, cfg: MonitorConfig, layout: Layout) -> dict[str, dict]:
    """Each per-row signal's score and threshold, read from the Evidently snapshot."""
    found = {m["config"]["column"]: float(m["value"]) for m in snapshot.dict()["metrics"]
             if m["config"]["type"].endswith(":ValueDrift")}
    out: dict[str, dict[str, Any]] = {c: {"method": "wasserstein", "score": found[c], "threshold": cfg.numeric_threshold}
                                      for c in numeric_columns(layout)}
    for c in layout.categorical:
        out[c] = {"method": "jensenshannon", "score": found[c], "threshold": cfg.category_threshold}
    return out


def set_signal(reference: list[list[str]], current: list[list[str]], threshold: float) -> dict[str, Any]:
    """Jensen-Shannon distance between the shares of all names predicted on each side (0 when neither
    predicts any), and each name's rate: the share of texts it is predicted for (once per text)."""
    from scipy.spatial import distance

    names = sorted({n for row in reference + current for n in row})
    counts = [pd.Series([n for row in side for n in row], dtype=object).value_counts().reindex(names, fill_value=0)
              for side in (reference, current)]
    empty = [int(c.sum()) == 0 for c in counts]
    score = 0.0 if all(empty) else 1.0 if any(empty) else float(distance.jensenshannon(counts[0], counts[1]))
    rates = {n: {side: float(np.mean([n in set(row) for row in rows])) if rows else 0.0
                 for side, rows in (("reference", reference), ("current", current))} for n in names}
    return {"method": "jensenshannon", "score": round(score, 6), "threshold": threshold, "rates": rates}


def standard_error(statistic: Statistic, scores: np.ndarray, reference: float) -> float:
    """The standard error of the primary metric on a batch of this size: binomial at the reference
    value for a mean of 1/0 scores (accuracy, exact match), else the bootstrap's (seeded) over the
    batch's own per-example scores, resampled as the report's paired tests resample them."""
    n = len(scores)
    if isinstance(statistic, MeanStatistic):
        return float(np.sqrt(reference * (1 - reference) / n))
    counts = np.random.default_rng(0).multinomial(n, np.full(n, 1.0 / n), size=RESAMPLES)
    return float(np.std(statistic(counts, scores)))


def drop_signal(metric: Metric, statistic: Statistic, scores: np.ndarray, current: float,
                reference: float, baseline: str, cfg: MonitorConfig) -> dict[str, Any]:
    """The primary metric on the labelled new rows against ``reference`` (the promoted run's test value,
    or the reference rows'): drifted when it fell by more than ``monitor.max_accuracy_drop`` and more
    than 2.33 standard errors of a batch this size."""
    drop = reference - current if metric.higher_is_better else current - reference
    noise = Z_ONE_SIDED_99 * standard_error(statistic, scores, reference)
    threshold = round(max(cfg.max_accuracy_drop, noise), 4)
    return {"method": f"{metric.label} drop below the {baseline}", "metric": metric.label, "score": round(drop, 6),
            "reference": reference, "current": current, "threshold": threshold, "drifted": drop > threshold}


def heads_of(model: Any, num_labels: int) -> list[Any]:
    """The head: the linear layer(s) with one output per class (label, score); a peft head has an
    active and a frozen copy."""
    import torch

    heads = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == num_labels]
    if not heads:
        raise ValueError(f"no linear layer with {num_labels} outputs: cannot find the head")
    return heads


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


def judged(found: dict[str, dict]) -> dict[str, dict]:
    """Every signal with ``drifted`` set (at or above its threshold) where it is not set yet."""
    for s in found.values():
        s.setdefault("drifted", s["score"] >= s["threshold"])
    return found
