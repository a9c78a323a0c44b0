"""The typed run record (ftlab.core.record): one reader and writer of metrics.json, the cost as its own
type, and a run's task rebuilt from the run's own recorded options."""

from __future__ import annotations

import json

import pytest

from ftlab.analysis.rundir import Run
from ftlab.core.record import read_record
from tests.conftest import write_run_record


def test_a_quality_metric_and_a_cost_field_of_one_name_stay_apart(tmp_path):
    """NER reports entity precision; the cost records the precision it computed in (bf16/fp32)."""
    write_run_record(tmp_path, "token_classification", primary_metric="f1", f1=0.5, precision=0.25, recall=0.75,
                     per_type={"PER": {"f1": 0.5}})
    record = read_record(tmp_path)
    assert record.quality["precision"] == 0.25 and record.cost.precision == "fp32"
    assert record.primary == 0.5
    row = record.table_row()
    assert row["precision"] == 0.25 and row["cost_precision"] == "fp32" and "per_type" not in row
    assert row["train_seconds"] == 1.0 and row["method"] == "full"


def test_what_is_not_a_run_record_is_refused_naming_the_file_and_field(tmp_path):
    with pytest.raises(ValueError, match="is not a finished ftlab run"):
        read_record(tmp_path)
    write_run_record(tmp_path)
    record = json.loads((tmp_path / "metrics.json").read_text())
    del record["cost"]["train_seconds"]
    record["seed"] = "forty-two"
    (tmp_path / "metrics.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"metrics.json is not an ftlab run record: .*cost.train_seconds: Field required") as e:
        read_record(tmp_path)
    assert "seed: Input should be a valid integer" in str(e.value)


def test_a_runs_task_comes_from_its_own_config(tmp_path):
    """A regression run is read as regression whatever today's params say."""
    write_run_record(tmp_path, "regression", primary_metric="spearman", spearman=0.8)
    run = Run(tmp_path)
    assert run.task.name == "regression" and run.record.task == "regression"
    with pytest.raises(ValueError, match=r"has no history\.json"):
        run.history  # noqa: B018
