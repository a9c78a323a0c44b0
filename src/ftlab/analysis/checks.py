"""The ``checks`` stage: an overfitting verdict and a train-vs-test drift report for one run.

Overfitting is judged from ``history.json`` and the best step in ``metrics.json`` (train-subset
vs validation value of the task's gap metric: its primary metric, or the loss for causal_lm; and validation loss rising while train loss falls). Drift compares the
scored train subset (``train_predictions.parquet``, the reference) with the test set
(``predictions.parquet``, the current data) in an Evidently report, saved as ``drift.html``; the
key numbers are read back from that same report, so the HTML and ``checks.json`` always agree.
Drift is informational: it does not change the verdict (on a random split, a test at p < 0.05
still flags 5% of columns by chance).

Evidently and pandas are imported inside the function that uses them: importing
Evidently alone takes seconds, which a caller that only wants the verdict or ``enforce``
should not pay.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftlab.analysis.rundir import Run
from ftlab.core.escape import evidently_page
from ftlab.core.io import write_json, write_text
from ftlab.learning.tasks import Metric

VERDICTS = ("ok", "warn", "overfit")  # mildest first: checks.fail_on fails a verdict at or after it

if TYPE_CHECKING:
    from ftlab.core.config import ChecksConfig

NUMERIC = ("text_length", "word_count", "oov_rate")  # per-text descriptors that are drift-tested


class ChecksFailed(Exception):
    """A run whose verdict is at least as bad as ``checks.fail_on``."""


def check_run(run_dir: Path, cfg: ChecksConfig, out_dir: Path) -> dict:
    """Judge one run directory; write ``out_dir/checks.json`` and (with ``checks.drift``) ``out_dir/drift.html``.

    Verdict: "overfit" if the train−validation gap of the task's gap metric (turned so that
    positive means better on train) at the best (saved) step is ≥
    ``overfit_gap``; else "warn" if that gap is ≥ ``warn_gap``, or the gap at the last evaluation
    is ≥ ``overfit_gap``, or validation loss rose while train loss fell for ``rising_evals``
    evaluations in a row (early stopping restored the best weights, so late overfitting is a
    warning about the training recipe, not about the saved model); else "ok".
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    run = Run(run_dir)
    task = run.task
    result: dict[str, Any] = {"method": run.record.method, "metric": task.gap_metric.name,
                              **overfitting(run.history, run.record.best_step, cfg, task.gap_metric)}
    page = out_dir / "drift.html"
    if cfg.drift:
        snapshot, result["drift"] = drift_report(run)
        write_text(page, evidently_page(snapshot.get_html_str(as_iframe=False)))
    else:
        result["drift"] = None
        page.unlink(missing_ok=True)  # an earlier run's report is not this run's
    write_json(out_dir / "checks.json", result)
    return result


def overfitting(history: list[dict], best_step: int, cfg: ChecksConfig, metric: Metric | None = None) -> dict:
    """Gaps of ``metric`` (default: accuracy), the longest rising-validation-loss run, and the verdict with its reasons."""
    metric = metric or Metric("accuracy", "accuracy")
    best = next((h for h in history if h["step"] == best_step), None)
    gap_at_best = _gap(best, metric)
    gap_at_end = _gap(history[-1] if history else None, metric)
    longest, run, at_step = 0, 0, None
    for prev, cur in itertools.pairwise(history):
        rising = cur["validation_loss"] > prev["validation_loss"] and cur["train_loss"] < prev["train_loss"]
        run = run + 1 if rising else 0
        longest = max(longest, run)
        if run == cfg.rising_evals and at_step is None:
            at_step = cur["step"]

    overfit, warn, fine = [], [], []
    if best is None or gap_at_best is None:
        fine.append(f"no evaluation recorded at the best step {best_step}: {metric.label} gap unknown")
    else:
        msg = (f"at the best step {best_step}, train {metric.label} {best[f'train_{metric.name}']:.3f} vs validation "
               f"{best[f'validation_{metric.name}']:.3f}: gap {gap_at_best:.3f}")
        if gap_at_best >= cfg.overfit_gap:
            overfit.append(f"{msg} ≥ overfit_gap {cfg.overfit_gap}")
        elif gap_at_best >= cfg.warn_gap:
            warn.append(f"{msg} ≥ warn_gap {cfg.warn_gap}")
        else:
            fine.append(f"{msg} < warn_gap {cfg.warn_gap}")
    fine.append(f"longest run of evaluations with validation loss rising while train loss fell: {longest} "
                f"(< rising_evals {cfg.rising_evals})")
    if gap_at_end is not None and gap_at_end >= cfg.overfit_gap:
        warn.append(f"at the last evaluation (step {history[-1]['step']}) the gap is {gap_at_end:.3f} "
                    f"≥ overfit_gap {cfg.overfit_gap}")
    if at_step is not None:
        warn.append(f"validation loss rose while train loss fell for {longest} evaluations in a row "
                    f"(reached rising_evals {cfg.rising_evals} at step {at_step})")
    verdict = "overfit" if overfit else "warn" if warn else "ok"
    return {
        "verdict": verdict,
        "reasons": overfit + warn + ([] if overfit or warn else fine),
        "gap_at_best": gap_at_best,
        "gap_at_end": gap_at_end,
        "rising_val_loss": longest,
        "rising_val_loss_at_step": at_step,
    }


def _gap(record: dict | None, metric: Metric) -> float | None:
    """How much better ``metric`` is on the train subset than on validation, rounded so that
    0.95 − 0.85 counts as a gap of 0.10."""
    if record is None:
        return None
    sign = 1.0 if metric.higher_is_better else -1.0
    return round(sign * (record[f"train_{metric.name}"] - record[f"validation_{metric.name}"]), 6)


def oov_rates(texts: list[str], tokenizer_dir: Path) -> list[float]:
    """Per text, the share of its tokens that are the tokenizer's unknown token (0 if it has none).

    Read with the ``tokenizers`` library from the saved ``tokenizer.json`` when there is one (what
    transformers' fast tokenizer runs, without importing torch: seconds per check process)."""
    if (tokenizer_dir / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        unk_token = json.loads((tokenizer_dir / "tokenizer_config.json").read_text()).get("unk_token")
        unk = tokenizer.token_to_id(unk_token["content"] if isinstance(unk_token, dict) else unk_token) if unk_token else None
        encoded = [e.ids for e in tokenizer.encode_batch(list(texts), add_special_tokens=False)]
    else:
        from transformers import AutoTokenizer

        slow = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        unk = slow.unk_token_id
        encoded = slow(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
    return [sum(t == unk for t in ids) / len(ids) if ids and unk is not None else 0.0 for ids in encoded]


def drift_report(run: Run) -> tuple[Any, dict]:
    """Run the Evidently report (reference: train subset, current: test) and pick out its numbers."""
    import numpy as np
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.descriptors import TextLength, WordCount
    from evidently.metrics import MeanValue, UniqueValueCount
    from evidently.presets import DataDriftPreset

    task, labels = run.task, run.labels
    predictions = {"predictions.parquet": run.predictions("test"), "train_predictions.parquet": run.predictions("train")}
    columns = {name: task.drift_columns(df, labels) for name, df in predictions.items()}
    _, categorical = columns["predictions.parquet"]
    numeric = [c for c in columns["predictions.parquet"][0] if c not in categorical]
    definition = DataDefinition(text_columns=["text"], numerical_columns=["oov_rate", *numeric],
                                categorical_columns=categorical)
    descriptors = [TextLength("text", alias="text_length"), WordCount("text", alias="word_count")]

    def dataset(name: str) -> Any:
        df = pd.DataFrame({"text": predictions[name]["text"].to_numpy(), **columns[name][0]})
        df["oov_rate"] = oov_rates(df["text"].tolist(), run.path / "tokenizer")
        return Dataset.from_pandas(df, data_definition=definition, descriptors=descriptors)

    report = Report(
        [
            DataDriftPreset(columns=[*NUMERIC, *numeric, *categorical]),  # never the raw text: see the module doc
            *(MeanValue(column=c) for c in (*NUMERIC, *numeric)),
            *(UniqueValueCount(column=c) for c in categorical),
        ],
        include_tests=True,
    )
    with np.errstate(invalid="ignore", divide="ignore"):  # correlations of a constant column (OOV 0)
        snapshot = report.run(dataset("predictions.parquet"), dataset("train_predictions.parquet"))
    out = _drift_numbers(snapshot, labels, [*NUMERIC, *numeric], categorical)
    for m in task.metrics:  # the task's own numbers on both sides, as metrics.json computes them
        out[m.name] = {"train": float(task.test_metrics(predictions["train_predictions.parquet"], labels)[m.name]),
                       "test": float(task.test_metrics(predictions["predictions.parquet"], labels)[m.name])}
    return snapshot, out


def _drift_numbers(snapshot: Any, labels: list[str], numeric: list[str], categorical: list[str]) -> dict:
    """Plain floats from the report: test values from ``dict()``, train values from its reference side."""
    summary = snapshot.dict()
    drift_failed = {t["metric_config"]["metric_id"] for t in summary["tests"]
                    if t["id"] == "drift" and t["status"] == "FAIL"}
    found = {(m["config"]["type"].rsplit(":", 1)[-1], m["config"].get("column")): m for m in summary["metrics"]}

    def cur(kind: str, column: str | None = None) -> Any:
        return found[(kind, column)]["value"]

    def ref(kind: str, column: str | None = None) -> Any:
        return snapshot.context.get_reference_metric_result(found[(kind, column)]["id"]).to_dict()["value"]

    def drift(column: str) -> dict:
        m = found[("ValueDrift", column)]
        return {"method": m["config"]["method"], "threshold": float(m["config"]["threshold"]),
                "drift_score": float(m["value"]), "drifted": m["id"] in drift_failed}

    def shares(value: dict) -> dict[str, float]:
        return {name: float(value["shares"].get(name, 0.0)) for name in labels}

    out: dict[str, Any] = {}
    for c in numeric:
        out[c] = {"train_mean": float(ref("MeanValue", c)), "test_mean": float(cur("MeanValue", c)), **drift(c)}
    for c in categorical:
        out[f"{c}_share"] = {"train": shares(ref("UniqueValueCount", c)), "test": shares(cur("UniqueValueCount", c)),
                             **drift(c)}
    out["drifted_columns"] = [c for c in (*numeric, *categorical) if found[("ValueDrift", c)]["id"] in drift_failed]
    return out


def fails(verdict: str | None, fail_on: str) -> bool:
    """Whether ``verdict`` reaches ``fail_on`` ("never", "warn" or "overfit"); an unchecked run
    (None) never does."""
    return fail_on != "never" and verdict in VERDICTS and VERDICTS.index(verdict) >= VERDICTS.index(fail_on)


def enforce(result: dict, fail_on: str) -> None:
    """Raise ChecksFailed when the verdict reaches ``fail_on``."""
    if fails(result["verdict"], fail_on):
        reasons = "; ".join(result["reasons"])
        raise ChecksFailed(f"{result['method']}: verdict {result['verdict']} (checks.fail_on={fail_on}): {reasons}")
