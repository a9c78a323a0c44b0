"""Promote one cell of the comparison to ``<promote.dir>/<promote.name>/``: a standalone model.

By default the cell is the comparison's recommendation (``cheapest_within_tolerance``) at its
largest train size; among that method's seeds, the one with the best validation score (never the
test score: the test set judges the pick, it does not make it). The directory holds the exported
model (:mod:`ftlab.serving.export`), ``ftlab.json`` (what ``ftlab predict`` and ``ftlab monitor`` need to
know), ``reference.parquet`` (scored held-out test rows, the monitor's reference) and a model
card, ``README.md``, whose YAML metadata a model hub or DVC Studio reads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Literal

from ftlab.core.config import Cell
from ftlab.core.io import atomic_dir, write_json, write_text
from ftlab.core.layout import run_dir
from ftlab.core.record import read_record, write_record
from ftlab.data.prepare import fingerprint
from ftlab.learning.config import Config
from ftlab.serving import versions
from ftlab.serving.card import model_card
from ftlab.serving.reference import reference

log = logging.getLogger(__name__)

FORMAT = "ftlab-model/1"


class PromoteError(ValueError):
    """Nothing to promote: no comparison yet, or the named cell was not trained."""


def model_dir(cfg: Config) -> Path:
    return cfg.promote.dir / cfg.promote.name


def choose_cell(cfg: Config, comparison: dict, method: str | None = None, seed: int | None = None,
                train_size: int | Literal["all"] | None = None) -> Cell:
    """The recommended cell, or the one named; its run directory must be finished."""
    method = method or comparison["recommendation"]["cheapest_within_tolerance"]["method"]
    size = train_size if train_size is not None else comparison["train_sizes"][-1]  # sorted by examples
    cells = [Cell(method, c["seed"], c["train_size"]) for c in comparison["cells"]
             if c["method"] == method and c["train_size"] == size and seed in (None, c["seed"])]
    if not cells:
        where = cfg.report.dir / "comparison.json"
        raise PromoteError(f"{where} has no cell method={method} seed={seed} train_size={size}; "
                           f"trained: {sorted({(c['method'], c['seed'], c['train_size']) for c in comparison['cells']})}")

    task = cfg.task_type()

    def validation_score(c: Cell) -> float:
        best = read_record(run_dir(cfg, c)).best_validation
        return best.value if task.metric(best.metric).higher_is_better else -best.value

    return max(cells, key=validation_score)  # the first seed on ties


def promote(cfg: Config, method: str | None = None, seed: int | None = None,
            train_size: int | Literal["all"] | None = None) -> dict:
    """Export the chosen cell to ``model_dir(cfg)``, whole or not at all, if the gate lets it replace the
    model serving there (:mod:`ftlab.serving.gate`); returns the serving model's ``ftlab.json`` with
    the decision under ``promotion`` (also in ``<report.dir>/promotion.json``)."""
    from transformers import AutoTokenizer

    from ftlab.analysis.runs import load_run
    from ftlab.serving.export import (
        CAUSAL_CLASS,
        TOKEN_CLASS,
        export_causal_lm,
        export_classifier,
        export_token_classifier,
    )
    from ftlab.serving.gate import gate_run, record_digest

    report = cfg.report.dir / "comparison.json"
    if not report.is_file():
        raise PromoteError(f"{report} not found: run `ftlab compare` (or `dvc repro compare`) before promoting")
    comparison = json.loads(report.read_text())
    cell = choose_cell(cfg, comparison, method, seed, train_size)
    run, out = run_dir(cfg, cell), model_dir(cfg)
    decision = gate_run(cfg, run, out) | {"challenger": {"method": cell.method, "seed": cell.seed,
                                                          "train_size": cell.train_size, "run": str(run)}}
    if not decision["promoted"]:
        return versions.keep_serving(cfg, out, decision)
    if decision.get("same_run"):  # the serving model's own run: a fresh export, the same version
        decision["version"] = versions.serving(out)["version"]  # type: ignore[index]
    else:
        decision["version"] = versions.next_version(cfg, out)
        versions.archive(cfg, out)
    run_cfg, model, labels = load_run(run)
    tokenizer = AutoTokenizer.from_pretrained(str(run / "tokenizer"))
    record = read_record(run)
    with atomic_dir(out) as tmp:
        if standalone(run_cfg):
            layout = export_classifier(model, tokenizer, run_cfg.model, labels, tmp)
            extra = bi_meta(model)
        else:  # the run's own files (loaded by serving.export.load_promoted), model/ in transformers' layout where it can be
            layout, extra = "ftlab", {}
            shutil.copytree(run / "tokenizer", tmp / "tokenizer")
            if run_cfg.task.type == "token_classification" and export_token_classifier(model, tmp / "model"):
                extra = {"model_class": TOKEN_CLASS}
            elif run_cfg.task.type == "causal_lm" and export_causal_lm(model, tmp / "model"):
                extra = {"model_class": CAUSAL_CLASS}
            else:  # other tasks' run files; an NER or causal LM prompt, prefix or p-tuning adapter
                shutil.copytree(run / "model", tmp / "model")
            shutil.copy(run / "config.yaml", tmp / "config.yaml")
            write_json(tmp / "labels.json", labels)
            write_record(tmp, record)
        reference(run, tmp / "reference.parquet")
        meta = task_meta(run_cfg, labels) | extra | {
            "format": FORMAT, "version": decision["version"], "layout": layout, "method": cell.method, "seed": cell.seed,
            "train_size": cell.train_size, "run": str(run), "run_record_sha256": record_digest(run),
            "precision": record.cost.precision,
            "base_model": run_cfg.model.name, "pooling": run_cfg.model.pooling, "max_length": run_cfg.model.max_length,
            "data_fingerprint": data_fingerprint(cfg),
            # held-out quality on the whole test split: the monitor's baseline of the primary metric for labelled new data
            "test_metrics": {m.name: record.quality[m.name] for m in run_cfg.task_type().metrics}, "n_test": record.n_test,
        }
        write_json(tmp / "ftlab.json", meta)
        write_text(tmp / "README.md", model_card(cfg, meta, record, comparison, out) + versions.card_note(decision))
    versions.keep(cfg, out, decision)
    write_json(versions.promotion_file(cfg), decision)
    log.info("promoted %s %s (%s layout) to %s as v%d", cell.method, cell.name, layout, out, decision["version"])
    return meta | {"promotion": decision}


def standalone(cfg: Config) -> bool:
    """Whether the run exports to a standard library's format: single-text classification does (a
    transformers or sentence-transformers directory), and so do bi-encoded pairs (a sentence-transformers
    encoder); cross-encoded pairs, regression, multi-label, NER and causal LMs are promoted as ftlab run
    files for now (``layout: ftlab``, loaded with ``ftlab.analysis.runs.load_run``). The task says which."""
    return cfg.task_type().exportable()


def task_meta(cfg: Config, labels: list[str]) -> dict:
    """The task's part of ``ftlab.json``: what the model reads and what it predicts."""
    opts: Any = cfg.task
    pair_column = getattr(opts, "text_pair_column", None)  # pairs, cross- or bi-encoded
    pair = {"text_pair_column": pair_column, "pair_encoding": getattr(opts, "pair_encoding", "cross")} if pair_column else {}
    # a causal LM reads its prompts and answers what its responses held (text_column and label_column are unused)
    text, label = ((opts.prompt_column, opts.response_column) if cfg.task.type == "causal_lm"
                   else (cfg.task.text_column, cfg.task.label_column))
    return {"task": cfg.task_type().pipeline_tag(), "task_type": cfg.task.type, "text_column": text, **pair,
            "label_column": label, "labels": labels}


def bi_meta(model: object) -> dict:
    """A bi-encoded regressor's score range: its prediction is ``low + (1 + cos) / 2 * (high - low)``."""
    from ftlab.learning.tasks.biencoder import BiEncoder

    model = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft-wrapped one
    if not isinstance(model, BiEncoder) or model.classifier is not None:
        return {}
    return {"score_range": list(model.score_range())}


def data_fingerprint(cfg: Config) -> dict:
    """The data config's hash and a hash of the prepared training split's bytes."""
    train = cfg.data.prepared_dir / "train.parquet"
    content = hashlib.sha256(train.read_bytes()).hexdigest()[:16] if train.is_file() else None
    return {"config": fingerprint(cfg), "train_sha256": content}
