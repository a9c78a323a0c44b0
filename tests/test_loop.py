"""The loop carries data: a batch is ingested, trained on, and its model promoted only when the gate
says so; every version is kept and one command rolls back. Real tiny trainings on toy reviews (the
source) and finance sentences (the batches), whose labels hang on words the reviews never use."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from ftlab import stages
from ftlab.data.prepare import DataError, is_current
from ftlab.serving.promote import model_dir
from tests.conftest import toy_reviews
from tests.frozen_heap import frozen_heap, unfrozen_after_module  # noqa: F401  (autouse: tests on a frozen heap)

pytestmark = pytest.mark.pipeline

UP, DOWN = ["rose", "gained", "climbed", "soared"], ["fell", "dropped", "slumped", "sank"]
FILLER = "quarterly revenue shares dividend index bond yield inflation percent margin outlook guidance".split()


def finance(n: int, seed: int = 0) -> pd.DataFrame:
    """Finance sentences labelled pos/neg by one market verb: learnable, and new to a review model
    (without toy_reviews' row number, whose parity follows the label)."""
    rows = toy_reviews(n, seed, vocabulary=(DOWN, UP, FILLER))
    return rows.assign(text=rows["text"].str.rsplit(" ", n=1).str[0])


def digest(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def config(root: Path, tiny_model: str, **more):
    from ftlab.learning.config import load_config

    (root / "reviews.csv").parent.mkdir(parents=True, exist_ok=True)
    if not (root / "reviews.csv").is_file():
        toy_reviews(200).to_csv(root / "reviews.csv", index=False)
    return load_config(None, {
        "data.source": str(root / "reviews.csv"), "data.prepared_dir": str(root / "data/prepared"),
        "data.batches_dir": str(root / "data/batches"), "model.name": tiny_model, "model.pooling": "mean",
        "methods": ["full"], "method_params.full.lr": 1e-3, "train.batch_size": 16, "train.eval_steps": 20,
        "train.max_steps": 100, "train.train_eval_samples": 64, "train.threads": 1, "train.checkpoint_dir": None,
        "train.precision": "fp32", "train.output_dir": str(root / "runs"), "report.dir": str(root / "reports"),
        "promote.dir": str(root / "models"), "monitor.out_dir": str(root / "monitor"), "promote.gate": "better", **more})


def retrain(cfg) -> dict:
    stages.prepare(cfg)
    stages.train(cfg, "full")
    stages.compare(cfg)
    return stages.promote(cfg)


@pytest.fixture(scope="module")
def champion(tmp_path_factory, tiny_model) -> Path:
    """A project whose v1, trained on reviews alone, serves."""
    root = tmp_path_factory.mktemp("loop") / "project"
    meta = retrain(config(root, tiny_model))
    assert meta["version"] == 1 and meta["promotion"]["champion"] is None
    return root


@pytest.fixture
def project(champion, tmp_path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(champion, root)
    return root


def test_a_batch_that_helps_is_promoted_and_rollback_restores_the_champion(project, tiny_model, tmp_path):
    cfg = config(project, tiny_model)
    v1 = digest(model_dir(cfg))
    finance(240).to_csv(tmp_path / "finance.csv", index=False)
    stages.ingest(cfg, tmp_path / "finance.csv")
    assert not is_current(cfg, cfg.data.prepared_dir)  # a labelled batch makes the prepared data stale

    meta = retrain(cfg)
    decision = json.loads((cfg.report.dir / "promotion.json").read_text())
    assert decision["promoted"] and meta["version"] == 2, decision["reason"]
    found = decision["comparisons"]
    assert list(found) == ["overall", "source", "finance"]
    assert found["overall"]["verdict"] == "better" and found["finance"]["challenger"] > found["finance"]["champion"]
    prepared = json.loads((cfg.data.prepared_dir / "meta.json").read_text())
    assert prepared["slices"]["test"]["finance"] == 48 and prepared["slices"]["train"]["finance"] == 168
    report = json.loads((cfg.report.dir / "comparison.json").read_text())
    assert set(report["methods"][0]["slices"]) == {"source", "finance"}
    assert "## Per slice" in (cfg.report.dir / "comparison.md").read_text()
    assert "## Promotion" in (model_dir(cfg) / "README.md").read_text()
    v2 = digest(model_dir(cfg))
    assert v2 != v1

    assert stages.rollback(cfg)["version"] == 1
    assert digest(model_dir(cfg)) == v1  # byte for byte
    assert stages.rollback(cfg, to=2)["version"] == 2 and digest(model_dir(cfg)) == v2
    events = json.loads((project / "models/history/ftlab-model/versions.json").read_text())
    assert [(e["event"], e["version"]) for e in events] == [
        ("promoted", 1), ("promoted", 2), ("rolled back", 1), ("rolled back", 2)]


def test_promoting_the_serving_run_again_keeps_its_version(project, tiny_model):
    """No new data, no retraining: the pick is the run already serving, re-exported as the same version
    (never judged against itself, where evaluation noise could refuse it)."""
    cfg = config(project, tiny_model)
    meta = stages.promote(cfg)
    assert meta["version"] == 1 and meta["promotion"]["same_run"], meta["promotion"]
    assert "already serving" in meta["promotion"]["reason"] and not (project / "models/history/ftlab-model/v2").exists()


def test_a_batch_with_shuffled_labels_is_refused_and_the_champion_keeps_serving(project, tiny_model, tmp_path):
    cfg = config(project, tiny_model)
    before = digest(model_dir(cfg))
    noisy = finance(240, seed=1)
    noisy["label"] = noisy["label"].sample(frac=1.0, random_state=0).to_numpy()
    noisy.to_csv(tmp_path / "noisy.csv", index=False)
    stages.ingest(cfg, tmp_path / "noisy.csv", name="noisy")

    meta = retrain(cfg)
    decision = json.loads((cfg.report.dir / "promotion.json").read_text())
    assert not decision["promoted"] and "than the champion" in decision["reason"], decision  # worse on a slice, or not better
    assert decision["champion"]["version"] == 1 and meta["version"] == 1
    assert digest(model_dir(cfg)) == before
    assert sorted(p.name for p in (project / "models/history/ftlab-model").iterdir()) == ["v1", "versions.json"]


def test_a_bad_batch_is_refused_with_its_line_and_changes_nothing(project, tiny_model, tmp_path):
    cfg = config(project, tiny_model)
    stages.prepare(cfg)  # current for this copy of the project (its paths are in the fingerprint)
    prepared = digest(cfg.data.prepared_dir)
    (tmp_path / "bad.csv").write_text("text,label\nshares rose,pos\n \t ,neg\nyield fell,neg\n")
    with pytest.raises(DataError, match=r"bad\.csv: 1 null or blank text\(s\), e\.g\. .*bad\.csv:3"):
        stages.ingest(cfg, tmp_path / "bad.csv")
    (tmp_path / "cols.csv").write_text("sentence,label\nshares rose,pos\n")
    with pytest.raises(DataError, match=r"cols\.csv: missing column\(s\) \['text'\]"):
        stages.ingest(cfg, tmp_path / "cols.csv")
    assert not cfg.data.batches_dir.exists() or not any(cfg.data.batches_dir.iterdir())
    assert is_current(cfg, cfg.data.prepared_dir) and digest(cfg.data.prepared_dir) == prepared


def test_an_unlabelled_batch_is_monitored_and_its_labelling_queue_ingested_back(project, tiny_model, tmp_path):
    """Unlabelled rows leave training current; the monitor's labelling queue, filled in as a person
    would in a spreadsheet, is ingested back as a labelled batch that joins training."""
    cfg = config(project, tiny_model)
    stages.prepare(cfg)
    finance(60)[["text"]].to_csv(tmp_path / "incoming.csv", index=False)
    info = stages.ingest(cfg, tmp_path / "incoming.csv")
    assert not info["labelled"] and info["rows"] == 60
    assert is_current(cfg, cfg.data.prepared_dir)
    with pytest.raises(DataError, match="already ingested"):
        stages.ingest(cfg, tmp_path / "incoming.csv")
    result = stages.monitor(cfg, Path(info["dir"]) / "rows.parquet")
    assert result["verdict"] in {"ok", "drift"} and not result["labelled"]
    queue = pd.read_csv(result["labelling_queue"]["csv"])
    with pytest.raises(DataError, match="label"):  # not labelled yet: refused, naming the rows
        stages.ingest(cfg, Path(result["labelling_queue"]["csv"]), name="queue")
    queue["label"] = ["pos" if any(w in text.split() for w in UP) else "neg" for text in queue["text"]]
    queue.to_csv(tmp_path / "labelled.csv", index=False)
    back = stages.ingest(cfg, tmp_path / "labelled.csv", name="queue")
    assert back["labelled"] and back["rows"] == len(queue) == 60
    assert not is_current(cfg, cfg.data.prepared_dir)
