"""A cell's identity (ftlab.training.identity): what decides whether the flow may skip a finished cell and
which checkpoints a killed run resumes from. It changes with everything the result depends on and
with nothing else."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from ftlab import stages
from ftlab.core.config import Cell
from ftlab.core.source import SRC, code_digest
from ftlab.training.identity import cell_identity, cell_key

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


@pytest.fixture
def src_copy(tmp_path) -> Path:
    """A copy of the ftlab package to edit."""
    copy = tmp_path / "src" / "ftlab"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(("file", "old", "new"), [
    ("training/trainer.py", "from __future__", "# a new comment\nfrom __future__"),
    ("training/train.py", '"""Fine-tune one method', '"""Train one method'),  # a docstring
    ("cli/operations.py", '"""CI retraining: dvc pull', '"""Retrain in CI: dvc pull'),  # another command's help text
    ("cli/operations.py", "def ci(", "def ci(  # the CI entry\n"),  # layout
    ("cli/pipeline.py", 'say(result["recommendation"]["text"])', 'say("recommended: " + result["recommendation"]["text"])'),
    ("analysis/report.py", "from __future__", "X = 1\nfrom __future__"),  # code that training does not run
    ("stages.py", "def compare(cfg: Config) -> dict:", "def compare(cfg: Config) -> dict:\n    cfg = cfg"),
])
def test_the_code_digest_ignores_what_does_not_train(src_copy, file, old, new):
    before = code_digest("train", src_copy)
    _edit(src_copy / file, old, new)
    assert code_digest("train", src_copy) == before


@pytest.mark.parametrize(("file", "old", "new"), [
    ("training/trainer.py", "from __future__ import annotations", "from __future__ import annotations\nX = 1"),
    ("learning/modeling.py", "from __future__ import annotations", "from __future__ import annotations\nX = 1"),
    ("learning/methods/lora.py", "from __future__ import annotations", "from __future__ import annotations\nX = 1"),
    ("stages.py", "out or run_dir(cfg, c)", "out if out else run_dir(cfg, c)"),  # the train stage function
    ("cli/pipeline.py", "if not metrics:", "if metrics is None or not metrics:"),  # the train command
    ("cli/common.py", "level=logging.DEBUG if verbose", "level=logging.NOTSET if verbose"),  # shared by every command
])
def test_the_code_digest_changes_with_a_statement_training_runs(src_copy, file, old, new):
    before = code_digest("train", src_copy)
    _edit(src_copy / file, old, new)
    assert code_digest("train", src_copy) != before


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
    # the task's function: called as a Prefect task outside a flow, it would start a temporary Prefect server (10 s)
    with pytest.raises(RuntimeError, match=r"not recording the outputs in dvc.lock: the run\(s\) lora s42-nall do not match"):
        dvc_commit.fn(None, cfg, [CELL])
