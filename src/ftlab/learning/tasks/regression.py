"""``regression``: a real-valued score per text or text pair (similarity, rating, readability)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import Field

from ftlab.learning.tasks.base import DataError, Metric, register, where
from ftlab.learning.tasks.pairs import PairOptions, PairTask
from ftlab.learning.tasks.sequence import stack
from ftlab.learning.tasks.statistics import SpearmanStatistic

if TYPE_CHECKING:
    from torch import nn

    from ftlab.core.config import ModelConfig


class RegressionOptions(PairOptions):
    scale_target: bool = Field(True, description=(
        "standardise the target with the train split's mean and std inside the head (mean pooling): the loss is "
        "then in units of std whatever the scale, and the model still outputs the original scale"))


@register
class Regression(PairTask):
    name = "regression"
    summary = "a real-valued score per text or text pair: MSE loss, Spearman (primary), Pearson, RMSE"
    Options = RegressionOptions
    problem_type = "regression"
    metrics = (Metric("spearman", "Spearman"), Metric("pearson", "Pearson"),
               Metric("rmse", "RMSE", higher_is_better=False))
    # the paired tests rank every resample again: Spearman, not squared error, which would favour a
    # calibrated regressor over a better-ranking but unscaled cosine (issue 29)
    statistic = SpearmanStatistic("spearman", "Spearman", points=False)

    def validation_targets(self, label: pd.Series) -> tuple[dict[str, Any], pd.Series | None]:
        return {"score": label}, None

    def check_rows(self, df: pd.DataFrame, split: str) -> None:
        """Also every score a finite number: refused where the file is read (prepare, ingest), by line."""
        super().check_rows(df, split)
        _numeric_scores(df, split)

    def encode(self, splits: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], list[str]]:
        out = {}
        for split, df in splits.items():
            score = _numeric_scores(df, split)
            out[split] = self.frame(df).assign(label=score.to_numpy(dtype=np.float32))
        if out["train"]["label"].nunique() < 2:
            raise DataError("train: every score is the same; regression needs varying targets")
        return out, ["score"]

    def targets(self, df: pd.DataFrame, labels: list[str]) -> np.ndarray:
        return df["label"].to_numpy(dtype=np.float32)

    def build_model(self, cfg: ModelConfig, labels: list[str], train: pd.DataFrame | None = None) -> nn.Module:
        from ftlab.learning.modeling import build_model

        target = (0.0, 1.0)
        if self.bi:  # the cosine is reported on the train targets' range (ftlab.learning.tasks.biencoder.cosine_to_score)
            from ftlab.learning.tasks.biencoder import build_bi_model

            if train is not None:
                target = (float(train["label"].min()), float(train["label"].max()))
            return build_bi_model(cfg, labels, self.problem_type, target=target)
        if train is not None and self.opts.scale_target:
            target = (float(train["label"].mean()), float(train["label"].std()) or 1.0)
        return build_model(cfg, labels, self.problem_type, target=target)

    def eval_metrics(self, logits: np.ndarray, label_ids: np.ndarray, labels: list[str]) -> dict[str, float]:
        return _scores(label_ids.reshape(-1), logits.reshape(-1))

    def predictions(self, df: pd.DataFrame, logits: list[np.ndarray], labels: list[str], decision: dict) -> pd.DataFrame:
        return self.frame(df).assign(label=df["label"].to_numpy(), prediction=stack(logits)[:, 0])

    def test_metrics(self, predictions: pd.DataFrame, labels: list[str]) -> dict:
        y, p = predictions["label"].to_numpy(dtype=float), predictions["prediction"].to_numpy(dtype=float)
        return {**_scores(y, p), "mse": float(np.mean((y - p) ** 2))}

    def example_scores(self, predictions: pd.DataFrame, labels: list[str]) -> np.ndarray:
        return predictions[["label", "prediction"]].to_numpy(dtype=float)

    def drift_columns(self, predictions: pd.DataFrame, labels: list[str]) -> tuple[dict, list[str]]:
        return {c: predictions[c].to_numpy(dtype=float) for c in ("label", "prediction")}, []

    def trivial(self, train: pd.DataFrame, test: pd.DataFrame, labels: list[str]) -> tuple[str, pd.DataFrame]:
        mean = float(train["label"].mean())
        return "mean_score", self.predictions(test, [np.array([mean])] * len(test), labels, {})

    def extra_baselines(self, model: ModelConfig, train: pd.DataFrame, test: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """For pairs under a mean-pooling sentence encoder, the zero-shot cosine of the two texts'
        embeddings (see :func:`~ftlab.learning.tasks.biencoder.zero_shot_cosine`), on the train targets' range."""
        if "text_pair" not in test or model.pooling != "mean":
            return {}
        from ftlab.learning.tasks.biencoder import cosine_to_score, zero_shot_cosine  # torch: only when it applies

        cosine = zero_shot_cosine(model, list(test["text"]), list(test["text_pair"]))
        low, high = float(train["label"].min()), float(train["label"].max())
        return {"zero_shot_cosine": test.assign(prediction=cosine_to_score(cosine, low, high))}


def _numeric_scores(df: pd.DataFrame, split: str) -> pd.Series:
    """The ``label`` column as numbers; refused, naming the values and their lines, unless all are finite."""
    score = pd.to_numeric(df["label"], errors="coerce")
    bad = score.isna() | ~np.isfinite(score.fillna(0))
    if bad.any():
        values = ", ".join(repr(v) for v in df["label"][bad].head(3))
        raise DataError(f"{split}: {int(bad.sum())} score(s) that are not finite numbers ({values}) at {where(df, bad)}")
    return score


def _scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Spearman, Pearson and RMSE; a constant prediction correlates with nothing: 0, not NaN."""
    from scipy import stats

    constant = np.ptp(p) == 0 or np.ptp(y) == 0
    return {
        "spearman": 0.0 if constant else float(stats.spearmanr(y, p).statistic),
        "pearson": 0.0 if constant else float(stats.pearsonr(y, p).statistic),
        "rmse": float(np.sqrt(np.mean((y - p) ** 2))),
    }
