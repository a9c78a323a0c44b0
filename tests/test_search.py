"""The per-method hyperparameter search: its space and sampler, its Optuna study (seeded, pruned,
resumed, replaced when what the trials depend on changes), and that training uses its choice."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from ftlab import stages
from ftlab.core import layout
from ftlab.learning.config import load_config
from ftlab.training.search import budget, defaults, sampler_kind, space, study_key


def test_each_method_searches_its_own_space_with_its_defaults():
    cfg = load_config(None, {"search.trials": 4})
    assert space(cfg, "lora") == {"lr": [3e-4, 1e-3, 3e-3], "r": [4, 8, 16]}
    assert defaults(cfg, "lora") == {"lr": 1e-3, "r": 8}
    assert space(cfg, "prompt_tuning")["num_virtual_tokens"] == [10, 20, 40]
    assert (sampler_kind(cfg, "lora"), budget(cfg, "lora")) == ("tpe", 4)  # 9 points: more than the trials
    assert (sampler_kind(cfg, "full"), budget(cfg, "full")) == ("grid", 3)  # 3 points: the whole grid, once each
    # a default outside the factors and the knob's list is still a point of the space
    odd = load_config(None, {"search.lr_factors": [2.0, 4.0], "method_params.lora.r": 12})
    assert space(odd, "lora") == {"lr": [1e-3, 2e-3, 4e-3], "r": [4, 8, 12, 16]}


def test_the_study_key_follows_what_the_trials_depend_on(make_config):
    base = {"search.enabled": True, "search.trials": 2, "search.lr_factors": [0.1, 0.3, 0.5, 1.0], "seeds": [1]}
    stages.prepare(make_config(**base))
    key = study_key(make_config(**base), "full")
    assert study_key(make_config(**{**base, "seeds": [1, 2]}), "full") == key  # the trials train at the first seed
    for edit in ({"search.lr_factors": [0.1, 0.3, 1.0, 2.0]}, {"seeds": [2]}):  # search.trials, eta: the test below
        assert study_key(make_config(**{**base, **edit}), "full") != key, edit


def _trials(cfg) -> list[optuna.trial.FrozenTrial]:
    storage = JournalStorage(JournalFileBackend(str(layout.study_file(cfg, "full"))))
    names = optuna.get_all_study_names(storage)
    assert len(names) == 1, names  # one study per file: a stale one is replaced, not kept beside
    return optuna.load_study(study_name=names[0], storage=storage).trials


def _kill_a_trial(cfg) -> None:
    """A search killed during its first trial: the study file holds it RUNNING, with the defaults."""
    storage = JournalStorage(JournalFileBackend(str(layout.study_file(cfg, "full"))))
    study = optuna.create_study(storage=storage, study_name=f"full-{study_key(cfg, 'full')}", direction="minimize")
    study.enqueue_trial(defaults(cfg, "full"))
    lrs = space(cfg, "full")["lr"]
    study.ask().suggest_float("lr", lrs[0], lrs[-1], log=True)


def test_search_is_seeded_pruned_resumed_and_feeds_the_cell_identity(make_config, tmp_path):
    """Validation loss (continuous, no ties) at steps 10 and 20; the defaults (a high lr) learn, the
    seeded draws below them learn less and are pruned at the first rung."""
    settings = dict(search__enabled=True, search__trials=2, search__lr_factors=[1e-3, 1e-2, 3e-2, 1.0],
                    train__metric_for_best="loss", report__dir=str(tmp_path / "reports"), methods=["full"],
                    **{"method_params.full.lr": 3e-3})
    cfg = make_config(**settings)
    stages.prepare(cfg)
    layout.study_file(cfg, "full").parent.mkdir(parents=True)
    _kill_a_trial(cfg)
    result = stages.search(cfg, "full")
    assert json.loads(layout.search_file(cfg, "full").read_text()) == result
    assert (result["sampler"], result["metric"], result["pruned"]) == ("tpe", "validation_loss", 1)
    first, second = result["trials"]
    assert first["params"] == defaults(cfg, "full") == result["chosen"] and first["state"] == "complete"
    assert second["state"] == "pruned" and second["steps"] == 10 and second["validation"] > first["validation"]
    killed = _trials(cfg)[0]
    assert killed.state == TrialState.FAIL and first["number"] == 1  # the killed trial's settings, tried again

    before = _trials(cfg)
    assert stages.search(cfg, "full") == result  # nothing changed: nothing trains
    assert [t.datetime_start for t in _trials(cfg)] == [t.datetime_start for t in before]

    more = stages.search(make_config(**{**settings, "search__trials": 3}), "full")
    after = _trials(cfg)
    assert len(after) == len(before) + 1 and more["trials"][:2] == result["trials"]  # one new trial, the rest kept
    assert [t.datetime_start for t in after[:-1]] == [t.datetime_start for t in before]

    # other rungs: a new study replaces the old; its seeded draws are those of the study resumed after the kill
    fresh = stages.search(make_config(**{**settings, "search__eta": 2}), "full")
    assert fresh["study"]["name"] != more["study"]["name"] and [t.number for t in _trials(cfg)] == [0, 1]
    assert [t["params"] for t in fresh["trials"]] == [t["params"] for t in result["trials"]]

    identity = stages.plan(make_config(**{**settings, "search__eta": 2}))
    assert identity[stages.cell(cfg, "full")]["method_params"]["lr"] == fresh["chosen"]["lr"]


def test_training_refuses_to_run_without_the_search_it_was_told_to_use(make_config, tmp_path):
    cfg = make_config(search__enabled=True, report__dir=str(tmp_path / "reports"))
    with pytest.raises(stages.StageFailed, match="run `ftlab search -m lora` first"):
        stages.train(cfg, "lora")


def test_disabled_search_writes_a_stub_without_training(make_config, tmp_path):
    cfg = make_config(report__dir=str(tmp_path / "reports"))
    assert stages.search(cfg, "full") == {"method": "full", "enabled": False, "chosen": {}}
    assert stages.tuned(cfg, "full") is cfg
    assert not layout.study_file(cfg, "full").exists()
