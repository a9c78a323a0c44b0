"""A cell's identity (ftlab.identity): what decides whether the flow may skip a finished cell and
which checkpoints a killed run resumes from. It changes with everything the result depends on and
with nothing else."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from ftlab import stages
from ftlab.config import Cell
from ftlab.identity import SRC, cell_identity, cell_key, code_files

ROOT = Path(__file__).resolve().parents[1]
CELL = Cell("lora", 42, "all")


@pytest.fixture
def prepared(make_config):
    cfg = make_config()
    stages.prepare(cfg)
    return make_config


def key(cfg, cell: Cell = CELL) -> str:
    return cell_key(cell_identity(cfg, cell))


@pytest.mark.parametrize("edit", [
    {"train__threads": 2}, {"train__output_dir": "elsewhere"}, {"train__checkpoint_dir": None},
    {"train__logging_steps": 3}, {"report__tolerance": 0.05}, {"monitor__numeric_threshold": 0.3},
    {"method_params__full": {"lr": 0.5}}, {"methods": ["lora", "full"]}, {"pipeline__max_parallel": 1},
])
def test_edits_that_do_not_change_the_result_keep_the_identity(prepared, edit):
    assert key(prepared(**edit)) == key(prepared())


@pytest.mark.parametrize("edit", [
    {"method_params__lora": {"r": 2}}, {"train__max_steps": 7}, {"train__batch_size": 8},
    {"model__max_length": 32}, {"train__precision": "fp32"}, {"train__warmup_ratio": 0.2},
])
def test_edits_that_change_the_result_change_the_identity(prepared, edit):
    assert key(prepared(**edit)) != key(prepared())


def test_the_cell_and_the_prepared_data_are_part_of_the_identity(prepared):
    cfg = prepared()
    assert key(cfg, Cell("lora", 7, "all")) != key(cfg) != key(cfg, Cell("lora", 42, 100))
    before = key(cfg)
    train = cfg.data.prepared_dir / "train.parquet"
    df = pd.read_parquet(train)
    df.iloc[:-1].to_parquet(train, index=False)  # one row fewer: other data, same params
    assert key(cfg) != before


def test_the_training_code_is_what_dvc_yaml_lists_for_the_train_stage():
    """Every module training imports is a dep of the train stage (so both drivers retrain on an
    edit of it), and modules training does not import are not part of the identity."""
    files = {str(p.relative_to(SRC.parents[1])) for p in code_files()}
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]["deps"]
    listed = [d for d in deps if d.startswith("src/")]
    assert all(any(f == d or f.startswith(d + "/") for d in listed) for f in files), sorted(files)
    assert {"src/ftlab/train.py", "src/ftlab/trainer.py", "src/ftlab/identity.py", "src/ftlab/data.py"} <= files
    assert not files & {"src/ftlab/cli.py", "src/ftlab/monitor.py", "src/ftlab/report.py", "src/ftlab/promote.py"}


def test_the_flow_records_nothing_in_dvc_lock_when_a_run_is_not_current(prepared, tmp_path, monkeypatch):
    """A run trained on the prepared data, then new data prepared under it: the flow's dvc commit
    refuses, naming the cell, before calling DVC (there is no DVC project here to call)."""
    import sys

    sys.path.insert(0, str(ROOT / "flows"))
    from finetune import dvc_commit

    cfg = prepared(train__max_steps=2, train__eval_steps=1)
    stages.train(cfg, "lora")
    monkeypatch.chdir(tmp_path)
    train = cfg.data.prepared_dir / "train.parquet"
    pd.read_parquet(train).iloc[:-1].to_parquet(train, index=False)
    with pytest.raises(RuntimeError, match=r"not recording the outputs in dvc.lock: the run\(s\) lora s42-nall do not match"):
        dvc_commit(None, cfg, [CELL])
