"""The example task of docs/architecture.md (Adding a task), registered as a new task is: its module, imported before the config is
built (as ``ftlab.learning.tasks`` imports its modules), then prepare, validate and train on toy data.

It runs in a fresh interpreter: this test process built its ``Config`` before the example existed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.pipeline  # a subprocess that trains: scheduled with the long modules

PAGE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"

SCRIPT = """
import json, sys
import topic  # the registration: the task's module imported before the config is built
from ftlab import stages
from ftlab.core.layout import run_dir
from ftlab.learning.config import load_config

cfg = load_config(None, json.loads(sys.argv[1]))
stages.prepare(cfg)
checks = stages.validate(cfg)["checks"]
stages.train(cfg, "full")
metrics = json.loads((run_dir(cfg, stages.cell(cfg, "full")) / "metrics.json").read_text())
print(json.dumps({"rules": sorted({c["rule"] for c in checks}), "task": metrics["task"], "accuracy": metrics["accuracy"]}))
"""


def example_task() -> str:
    """The Python block after the docs page's ``<!-- example-task -->`` marker."""
    found = re.search(r"<!-- example-task -->\n```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    assert found, "docs/architecture.md has no example task block"
    return found.group(1)


def test_the_readme_example_task_prepares_validates_and_trains(tmp_path: Path, tiny_model: str, toy_csv: Path) -> None:
    (tmp_path / "topic.py").write_text(example_task(), encoding="utf-8")
    overrides = {"task.type": "topic", "methods": ["full"], "data.source": str(toy_csv),
                 "data.prepared_dir": str(tmp_path / "data"), "model.name": tiny_model,
                 "train.batch_size": 16, "train.eval_steps": 5, "train.max_steps": 5, "train.train_eval_samples": 32,
                 "train.output_dir": str(tmp_path / "runs"), "train.checkpoint_dir": None, "train.threads": 1,
                 "report.dir": str(tmp_path / "reports")}
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(overrides)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["task"] == "topic"
    assert 0.0 <= out["accuracy"] <= 1.0
    assert "min examples per class" in out["rules"]  # the class counts of class labels are checked...
    assert "class balance" not in out["rules"]  # ... but not their balance: the task's own trait
