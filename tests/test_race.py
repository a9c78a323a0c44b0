"""The race's rule on synthetic validation scores, and a raced cell's stop and resume on the tiny model.

The rule (ftlab.analysis.race.decide) is tested on per-example scores whose difference is known; the
training side (ftlab.training.race, the train stage's resume) on real 20-step trainings of the tiny
BERT (30 steps): a stop at a rung and a resume train exactly what the uninterrupted run trains, an eliminated
cell trains no step past its rung, and the validation scores the race decides on do not move when
the test split's labels do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ftlab import stages
from ftlab.analysis.race import decide
from ftlab.core.config import Cell
from ftlab.core.params import ConfigError
from ftlab.learning.config import load_config
from ftlab.learning.tasks.statistics import MeanStatistic
from ftlab.training.race import rung_result

ACCURACY = MeanStatistic("accuracy", "accuracy")


def right_or_wrong(rate: float, seeds: int = 3, examples: int = 400, seed: int = 0) -> np.ndarray:
    """(seeds, examples) of 1/0, each seed right on a ``rate`` share of the examples."""
    rng = np.random.default_rng(seed)
    return (rng.random((seeds, examples)) < rate).astype(float)


@pytest.mark.parametrize(("rungs", "problem"), [([0.5, 0.2], "must increase"), ([0.2, 1.0], "below 1"),
                                                ([], "shares of the step budget")])
def test_rungs_are_increasing_shares_of_the_budget(rungs, problem):
    with pytest.raises(ConfigError, match=f"race.rungs.*{problem}"):
        load_config(None, {"race.rungs": rungs})


def test_a_clearly_worse_method_is_eliminated_as_inferior_and_a_close_one_survives():
    good = right_or_wrong(0.9)
    close = good.copy()
    close[:, :4] = 1 - close[:, :4]  # 4 of 400 examples flipped: within any tolerance of the leader
    scores = {"full": good, "lora": close, "prompt_tuning": right_or_wrong(0.6, seed=1)}
    rule = decide(scores, ACCURACY, True, tolerance=0.01, level=0.95, eta=1)  # no cap: the test alone decides
    rows = {r["method"]: r for r in rule["methods"]}
    assert rule["leader"] in ("full", "lora")
    assert rows["prompt_tuning"]["decision"] == "eliminated" and rows["prompt_tuning"]["reason"] == "inferior"
    assert rows["prompt_tuning"]["ci_high"] < -0.01 and rows["prompt_tuning"]["p_value"] < 0.05
    other = "lora" if rule["leader"] == "full" else "full"
    assert rows[other]["decision"] == "survives" and rows[other]["ci_high"] > -0.01


def test_the_cap_keeps_the_best_ceil_n_over_eta_when_no_test_can_tell():
    same = right_or_wrong(0.8, examples=40)  # 40 examples: no difference among these is significant
    scores = {m: same.copy() for m in ("a", "b", "c", "d", "e")}
    for i, m in enumerate("bcde", start=1):
        scores[m][:, :i] = 0.0  # a little worse each, a < b < ... in errors
    rule = decide(scores, ACCURACY, True, tolerance=0.5, level=0.95, eta=2)
    assert rule["keep"] == 3  # ceil(5 / 2)
    assert [(r["method"], r["decision"], r["reason"]) for r in rule["methods"]] == [
        ("a", "leader", None), ("b", "survives", None), ("c", "survives", None), ("d", "eliminated", "cap"),
        ("e", "eliminated", "cap")]


def test_lower_is_better_metrics_lead_with_the_lowest_score():
    errors = {"low": np.full((2, 50), 0.1), "high": np.full((2, 50), 0.9)}
    rule = decide(errors, ACCURACY, False, tolerance=0.01, level=0.95, eta=1)
    assert rule["leader"] == "low" and rule["methods"][1]["reason"] == "inferior"


@pytest.fixture
def raced(make_config, tmp_path):
    """A config whose cells learn the toy data in 30 steps (the tiny BERT at lr 1e-2), prepared; its
    rung, half the budget, is the evaluation at step 20."""
    cfg = make_config(methods=["full"], seeds=[1], method_params__full__lr=1e-2, train__early_stopping_patience=0,
                      train__max_steps=30,
                      report__dir=str(tmp_path / "reports"), race__enabled=True, race__rungs=[0.5])
    stages.prepare(cfg)
    return cfg


def _race_record(status: str, result: dict) -> dict:
    stop = result["step"] if status == "eliminated" else result["budget"]
    return {"enabled": True, "status": status, "rung": 1, "share": 0.5, "stop_step": stop,
            "budget_steps": result["budget"], "train_seconds": result["seconds"]}


def test_a_survivor_resumes_at_its_rung_and_trains_what_the_uninterrupted_run_trains(raced, tmp_path):
    from ftlab.training.train import train

    cell = Cell("full", 1, "all")
    result = rung_result(raced, cell, 0.5, 0.0)
    assert (result["step"], result["budget"]) == (20, 30)
    assert len(result["scores"]) == len(pd.read_parquet(raced.data.prepared_dir / "validation.parquet"))
    survivor = train(raced, "full", tmp_path / "survivor", seed=1, race=_race_record("survivor", result))
    assert survivor["status"] == "survivor" and survivor["steps"] == 30
    assert survivor["race"]["trained_from"] == 20  # the race's 20 steps were not trained again
    whole = train(raced.model_copy(update={"race": raced.race.model_copy(update={"enabled": False})}), "full",
                  tmp_path / "whole", seed=1)
    assert whole["status"] == "complete" and whole["accuracy"] > 0.6  # it learned: the comparison means something
    resumed, uninterrupted = (pd.read_parquet(tmp_path / d / "predictions.parquet") for d in ("survivor", "whole"))
    pd.testing.assert_frame_equal(resumed, uninterrupted)


def test_an_eliminated_cell_trains_no_step_past_its_rung(raced, tmp_path):
    from ftlab.training.train import train

    result = rung_result(raced, Cell("full", 1, "all"), 0.5, 0.0)
    out = train(raced, "full", tmp_path / "eliminated", seed=1, race=_race_record("eliminated", result))
    assert out["status"] == "eliminated" and out["steps"] == 20 and out["race"]["trained_from"] == 20
    assert out["race"]["stop_step"] == 20 and out["race"]["budget_steps"] == 30
    assert out["cost"]["train_seconds"] == result["seconds"]  # the race's seconds: none trained here
    assert {"model", "tokenizer", "predictions.parquet", "dvclive", "tensorboard", "identity.json"} <= {
        p.name for p in (tmp_path / "eliminated").iterdir()}


def test_the_race_scores_the_validation_split_and_never_the_test_split(raced):
    cell = Cell("full", 1, "all")
    before = rung_result(raced, cell, 0.5, 0.0)["scores"]
    test_file = raced.data.prepared_dir / "test.parquet"
    test = pd.read_parquet(test_file)
    test["label"] = np.where(test["label"] == "pos", "neg", "pos")  # every test label wrong
    test.to_parquet(test_file, index=False)
    after = rung_result(raced, cell, 0.5, 0.0)["scores"]  # other data bytes: a new identity, trained again
    np.testing.assert_array_equal(before, after)
