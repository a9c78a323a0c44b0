"""Champion / challenger: a new pick replaces the serving model only when the evidence says it may.

Before ``ftlab promote`` replaces ``<promote.dir>/<promote.name>``, the model serving there (the
champion) is scored again on the current test rows, which hold the newest batches' test parts, and
compared with the challenger's own test predictions: overall and per slice, with the report's
paired bootstrap on the task's primary metric (same examples, :func:`ftlab.analysis.stats.paired_bootstrap`).
``promote.gate`` decides:

* ``always``: promote; the comparison is still recorded.
* ``not_worse`` (default): refuse when the challenger is significantly worse than the champion, by
  more than ``promote.tolerance``, overall or on any slice.
* ``better``: promote only when the challenger is significantly better overall, by more than
  ``promote.tolerance``, and not refused by ``not_worse``.

Every export layout is re-scored: a run-files champion with its run's own model (an NER ``model/`` in
transformers' layout with transformers' class, :func:`ftlab.serving.export.load_promoted`), an exported
classifier or a bi-encoder (sentence-transformers layout) with ftlab's model over the exported
weights, in the precision its run was tested in. A champion that cannot be scored on these rows
(other labels, another task, single texts for a pair model) is reported as such, and the challenger
is promoted: there is no like-for-like evidence.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ftlab.analysis.stats import paired_bootstrap
from ftlab.learning.config import Config
from ftlab.learning.tasks import Task

log = logging.getLogger(__name__)

OVERALL = "overall"


def rescore(model_dir: Path, test: pd.DataFrame, labels: list[str], task: Task) -> tuple[pd.DataFrame | None, str]:
    """The champion's predictions on ``test`` as its run would have written them, or None and why not."""
    meta = json.loads((model_dir / "ftlab.json").read_text())
    if meta.get("task_type") != task.name or meta.get("labels") != labels:
        return None, (f"the champion predicts {meta.get('task_type')} labels {meta.get('labels')}; the data now has "
                      f"{task.name} labels {labels}")
    if meta.get("layout") == "ftlab":
        return _rescore_run_files(model_dir, test, labels, task), ""
    if meta.get("layout") == "bi-encoder":
        return _rescore_bi_encoder(model_dir, meta, test, labels, task)
    from ftlab.serving.export import load_exported  # every other layout is an exported classifier
    from ftlab.serving.predict import class_probabilities

    model, tokenizer = load_exported(model_dir, meta)
    probs = class_probabilities(model, tokenizer, test["text"].astype(str).tolist(), 64, meta["max_length"],
                                bf16=meta.get("precision") == "bf16")  # the precision its run was tested in
    return task.predictions(test, list(np.log(probs.astype(np.float64) + 1e-12)), labels, {}), ""


def _rescore_bi_encoder(model_dir: Path, meta: dict, test: pd.DataFrame, labels: list[str],
                        task: Task) -> tuple[pd.DataFrame | None, str]:
    """A bi-encoder champion (a sentence-transformers export): each text of each test pair encoded alone,
    as its run evaluated them, whatever pair encoding the current config trains."""
    if "text_pair" not in test:
        return None, "the champion scores text pairs; the test rows have no second text"
    from datasets import Dataset

    from ftlab.learning.tasks.biencoder import PairCollator, predict_pairs, tokenize_pairs
    from ftlab.serving.export import load_bi_encoder

    model, tokenizer = load_bi_encoder(model_dir, meta)
    pairs = Dataset.from_dict(tokenize_pairs(test["text"].astype(str).tolist(), test["text_pair"].astype(str).tolist(),
                                             tokenizer, meta["max_length"]))
    rows = predict_pairs(model, pairs, PairCollator(tokenizer), 64, bf16=meta.get("precision") == "bf16")
    return task.predictions(test, rows, labels, {}), ""


def _rescore_run_files(model_dir: Path, test: pd.DataFrame, labels: list[str], task: Task) -> pd.DataFrame:
    """A champion kept as run files (layout ``ftlab``): the run's own model, tokenizer and decision."""
    from transformers import AutoTokenizer

    from ftlab.core.record import read_record
    from ftlab.serving.export import load_promoted
    from ftlab.training.scoring import outputs

    run_cfg, model, _ = load_promoted(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir / "tokenizer"))
    dataset = task.tokenize(test, tokenizer, run_cfg.model.max_length, labels)
    bf16 = json.loads((model_dir / "ftlab.json").read_text()).get("precision") == "bf16"  # as its run evaluated
    own = task.test_outputs(model, tokenizer, dataset, 64, bf16)
    rows = own if own is not None else outputs(task, model, dataset, task.collator(tokenizer), 64, bf16)
    return task.predictions(test, rows, labels, read_record(model_dir).decision)


def _compare(challenger: pd.DataFrame, champion: pd.DataFrame, labels: list[str], task: Task, level: float) -> dict:
    """Both models' primary metric and the paired test of challenger against champion, on these rows."""
    metric = task.primary
    # one "seed" each: (1, examples, k), as the report stacks a method's seeds
    test = paired_bootstrap(task.example_scores(challenger, labels)[None], task.example_scores(champion, labels)[None],
                            level, statistic=task.statistic, higher_is_better=metric.higher_is_better)
    values = {side: float(task.test_metrics(df.reset_index(drop=True), labels)[metric.name])
              for side, df in (("challenger", challenger), ("champion", champion))}
    gain = test["difference"] if metric.higher_is_better else -test["difference"]
    return {"rows": len(challenger), **values, "gain": gain, **{k: test[k] for k in ("ci_low", "ci_high", "p_value", "verdict")}}


def comparisons(challenger: pd.DataFrame, champion: pd.DataFrame, labels: list[str], task: Task,
                level: float) -> dict[str, dict]:
    """{"overall" | slice: comparison}, the slices in the order the test rows hold them."""
    out = {OVERALL: _compare(challenger, champion, labels, task, level)}
    if "slice" in challenger:
        for name in dict.fromkeys(challenger["slice"]):
            mask = (challenger["slice"] == name).to_numpy()
            out[str(name)] = _compare(challenger[mask].reset_index(drop=True), champion[mask].reset_index(drop=True),
                                      labels, task, level)
    return out


def decide(found: dict[str, dict], gate: str, tolerance: float) -> tuple[bool, str]:
    """Whether the challenger is promoted under ``gate``, and the reason in one sentence."""
    if gate == "always":
        return True, "promote.gate is always: promoted without condition (the comparison is recorded)"
    worse = [f"{name} ({c['gain']:+.4f}, p={c['p_value']:.3g})" for name, c in found.items()
             if c["verdict"] == "worse" and -c["gain"] > tolerance]
    if worse:
        return False, f"significantly worse than the champion by more than {tolerance} on: {', '.join(worse)}"
    overall = found[OVERALL]
    if gate == "better" and not (overall["verdict"] == "better" and overall["gain"] > tolerance):
        return False, (f"not significantly better than the champion overall by more than {tolerance} "
                       f"({overall['gain']:+.4f}, p={overall['p_value']:.3g}; promote.gate is better)")
    return True, (f"{'better than' if overall['verdict'] == 'better' else 'not worse than'} the champion "
                  f"({overall['gain']:+.4f} overall, p={overall['p_value']:.3g}; promote.gate is {gate})")


def record_digest(run: Path) -> str:
    """The run's metrics.json hash: a promoted model remembers which finished run it came from."""
    return hashlib.sha256((run / "metrics.json").read_bytes()).hexdigest()


def judge(champion_dir: Path, challenger: pd.DataFrame, test: pd.DataFrame, labels: list[str], task: Task,
          gate: str, tolerance: float, level: float, run_digest: str | None = None) -> dict[str, Any]:
    """The gate's decision on the challenger's test predictions against the champion in ``champion_dir``.
    A challenger that is the very run serving (``run_digest``) is not judged against itself."""
    base = {"gate": gate, "tolerance": tolerance, "metric": task.primary.name, "level": level}
    if not (champion_dir / "ftlab.json").is_file():
        return {**base, "promoted": True, "champion": None, "reason": "no champion yet: the first promotion"}
    champion_meta = json.loads((champion_dir / "ftlab.json").read_text())
    base["champion"] = {k: champion_meta.get(k) for k in ("version", "method", "seed", "train_size", "run")}
    if run_digest is not None and champion_meta.get("run_record_sha256") == run_digest:
        return {**base, "promoted": True, "same_run": True,
                "reason": f"the pick is the run already serving (v{champion_meta.get('version')}): re-exported as that version"}
    champion, why_not = rescore(champion_dir, test, labels, task)
    if champion is None:
        return {**base, "promoted": True, "reason": f"the champion cannot be compared on these rows: {why_not}"}
    found = comparisons(challenger, champion, labels, task, level)
    promoted, reason = decide(found, gate, tolerance)
    log.info("gate (%s): %s: %s", gate, "promote" if promoted else "refuse", reason)
    return {**base, "promoted": promoted, "reason": reason, "comparisons": found}


def gate_run(cfg: Config, run: Path, champion_dir: Path) -> dict[str, Any]:
    """The gate's decision on the run ``run`` (the challenger) against the model serving in ``champion_dir``.
    The run must have been tested on the current prepared test rows: they are what both are judged on."""
    challenger = pd.read_parquet(run / "predictions.parquet")
    labels = json.loads((run / "labels.json").read_text())
    test_file = cfg.data.prepared_dir / "test.parquet"
    test = pd.read_parquet(test_file)
    if len(test) != len(challenger) or not np.array_equal(test["text"].astype(str), challenger["text"].astype(str)):
        raise ValueError(f"{run} was tested on other rows than {test_file} (the data changed since it trained): "
                         "retrain it (`dvc repro` or `ftlab pipeline`) before promoting")
    if "slice" in test and "slice" not in challenger:
        challenger = challenger.assign(slice=test["slice"].to_numpy())
    return judge(champion_dir, challenger, test, labels, cfg.task_type(), cfg.promote.gate, cfg.promote.tolerance,
                 cfg.report.confidence, record_digest(run))
