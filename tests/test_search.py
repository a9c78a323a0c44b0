"""The per-method hyperparameter search: its grid, its budget, and that training uses its choice."""

from __future__ import annotations

import json

import pytest
import yaml

from ftlab import stages
from ftlab.core import layout
from ftlab.learning.config import load_config
from ftlab.training.search import grid, trials


def test_each_method_searches_its_own_grid_defaults_first():
    cfg = load_config(None, {"search.trials": 4})
    lora = grid(cfg, "lora")
    assert lora[0] == {"lr": 1e-3, "r": 8}
    assert len(lora) == 9 and {p["r"] for p in lora} == {4, 8, 16}
    assert {p["lr"] for p in lora} == {3e-4, 1e-3, 3e-3}
    assert {p["num_virtual_tokens"] for p in grid(cfg, "prompt_tuning")} == {10, 20, 40}
    assert grid(cfg, "full") == [{"lr": 1e-4}, {"lr": 3e-5}, {"lr": 3e-4}]
    chosen = trials(cfg, "lora")
    assert len(chosen) == 4 and chosen[0] == lora[0] and all(p in lora for p in chosen)
    assert len({json.dumps(p, sort_keys=True) for p in chosen}) == 4
    assert trials(cfg, "lora") == chosen  # seeded: the same budget every run
    assert len(trials(cfg, "full")) == 3  # the whole grid when it is smaller than the budget


def test_search_picks_by_validation_and_training_uses_the_choice(make_config, tmp_path):
    cfg = make_config(search__enabled=True, search__trials=2, search__lr_factors=[1.0, 30.0],
                      report__dir=str(tmp_path / "reports"), methods=["lora"])
    result = stages.search(cfg, "lora")
    assert json.loads((tmp_path / "reports/search/lora.json").read_text()) == result
    assert len(result["trials"]) == 2 and result["metric"] == "validation_accuracy"
    best = max(result["trials"], key=lambda t: t["validation"])
    assert result["chosen"] == best["params"]
    metrics = stages.train(cfg, "lora")
    used = yaml.safe_load((layout.run_dir(cfg, stages.cell(cfg, "lora")) / "config.yaml").read_text())
    assert {k: used["method_params"]["lora"][k] for k in result["chosen"]} == result["chosen"]
    assert metrics["method"] == "lora"


def test_training_refuses_to_run_without_the_search_it_was_told_to_use(make_config, tmp_path):
    cfg = make_config(search__enabled=True, report__dir=str(tmp_path / "reports"))
    with pytest.raises(stages.StageFailed, match="run `ftlab search -m lora` first"):
        stages.train(cfg, "lora")


def test_disabled_search_writes_a_stub_without_training(make_config, tmp_path):
    cfg = make_config(report__dir=str(tmp_path / "reports"))
    assert stages.search(cfg, "full") == {"method": "full", "enabled": False, "chosen": {}}
    assert stages.tuned(cfg, "full") is cfg
