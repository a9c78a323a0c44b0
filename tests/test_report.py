"""The compare stage: recommendation rules on hand-made runs, outputs that render offline, real runs."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from ftlab.analysis.report import compare
from ftlab.core.config import ReportConfig
from ftlab.core.escape import md_text
from ftlab.training.train import train
from tests.conftest import write_run_record
from tests.frozen_heap import frozen_heap, unfrozen_after_module  # noqa: F401  (autouse: tests on a frozen heap)

FULL_PARAMS = 22_713_986
# method: accuracy, trainable params, train seconds, peak memory MB, artifact bytes
RUNS = {
    "full": (0.870, FULL_PARAMS, 200.0, 3000.0, 91_000_000),
    "lora": (0.865, 74_498, 150.0, 1400.0, 300_000),
    "prompt_tuning": (0.800, 8_066, 170.0, 1300.0, 40_000),
    "llrd": (0.872, FULL_PARAMS, 210.0, 3100.0, 91_000_000),
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
N_TEST = 2000
PLOT_FILES = ("validation_curves.png", "quality_vs_trainable.png", "quality_vs_time.png", "learning_curves.png")


def write_predictions(run_dir, correct: np.ndarray):
    """A test set of alternating labels, predicted right exactly where ``correct`` is true."""
    label = np.arange(len(correct)) % 2
    pd.DataFrame({"text": [f"text {i}" for i in range(len(correct))], "label": label,
                  "prediction": np.where(correct, label, 1 - label)}).to_parquet(run_dir / "predictions.parquet")
    (run_dir / "labels.json").write_text(json.dumps(["neg", "pos"]))


def first(accuracy, n=N_TEST):
    """Right on the first accuracy × n test examples: runs made with it are nested, so differences are one-sided."""
    return np.arange(n) < round(accuracy * n)


def write_run(run_dir, method, accuracy, trainable, seconds, memory, artifact, seed=42, train_size="all",
              n_train=7200, correct=None):
    run_dir.mkdir(parents=True)
    write_predictions(run_dir, first(accuracy) if correct is None else correct)
    total = FULL_PARAMS + (0 if trainable == FULL_PARAMS else trainable)
    cost = {"train_seconds": seconds, "train_samples_per_second": round(3 * 7200 / seconds, 3),
            "peak_memory_mb": memory, "eval_latency_ms_per_sample": 1.2}
    write_run_record(
        run_dir, cost=cost, method=method, accuracy=accuracy, macro_f1=accuracy - 0.002,
        trainable_params=trainable, total_params=total, trainable_percent=round(100 * trainable / total, 4),
        artifact_bytes=artifact, n_train=n_train, n_test=N_TEST, best_step=600, seed=seed, train_size=train_size,
    )
    history = [
        {"step": step, "epoch": step / 225, "train_loss": 0.7 - step / 2000, "train_accuracy": accuracy,
         "validation_loss": 0.65 - step / 2500, "validation_accuracy": accuracy - 0.1 + step / 6750,
         "validation_macro_f1": accuracy - 0.1 + step / 6750}
        for step in range(100, 700, 100)
    ]
    (run_dir / "history.json").write_text(json.dumps(history))
    return run_dir


def write_checks(checks_dir, verdict, reasons=()):
    checks_dir.mkdir(parents=True)
    (checks_dir / "checks.json").write_text(json.dumps({"verdict": verdict, "reasons": list(reasons)}))
    return checks_dir


@pytest.fixture
def runs(tmp_path):
    return [write_run(tmp_path / "runs" / m, m, *values) for m, values in RUNS.items()]


def run_compare(tmp_path, runs, verdicts=None, **report):
    verdicts = verdicts or {}
    checks = [write_checks(tmp_path / "checks" / r.name, verdicts[r.name]) if r.name in verdicts else None
              for r in runs]
    out = tmp_path / "report"
    return compare(runs, checks, ReportConfig(**report), out), out


@pytest.fixture(scope="module")
def default_report(tmp_path_factory):
    """compare on RUNS with the default settings, once for the tests that only read its result and
    files: each compare renders four plots (seconds)."""
    tmp = tmp_path_factory.mktemp("default-report")
    return run_compare(tmp, [write_run(tmp / "runs" / m, m, *values) for m, values in RUNS.items()])


def by_method(result):
    return {row["method"]: row for row in result["methods"]}


def test_json_has_one_row_per_method_and_is_what_compare_returns(default_report):
    result, out = default_report
    assert json.loads((out / "comparison.json").read_text()) == result
    assert {"methods", "recommendation", "summary", "cells", "by_size", "crossings", "seeds"} <= set(result)
    assert sorted(r["method"] for r in result["methods"]) == sorted(RUNS)
    for row in result["methods"]:
        for key in ("accuracy", "macro_f1", "trainable_params", "trainable_percent", "train_seconds",
                    "train_samples_per_second", "peak_memory_mb", "artifact_bytes", "overfitting", "pareto"):
            assert key in row, key
        assert row["overfitting"] is None  # no checks were run
    rec = result["recommendation"]
    assert rec["within_memory_budget"] is None and rec["within_time_budget"] is None


def test_best_and_cheapest_within_tolerance(tmp_path, runs, default_report):
    rec = default_report[0]["recommendation"]
    assert rec["best"] == {"method": "llrd", "value": 0.872}
    # lora is 0.7 points below llrd, but its interval [-1.1, -0.35] reaches below the 1-point margin:
    # not shown as good, so the best is picked; full is as good, but costs as much (5% less time is noise)
    assert rec["cheapest_within_tolerance"]["method"] == "llrd"
    assert rec["text"].startswith("Pick llrd: it has the best accuracy (0.872) and no cheaper method is shown as good")
    assert "lora is not shown non-inferior" in rec["text"] and "test rows (now 2,000) would settle it" in rec["text"]
    assert "prompt_tuning is inferior" in rec["text"] and "full" not in rec["text"]
    # with a 2-point margin lora's whole interval clears it, and it trains the fewest parameters
    rec = run_compare(tmp_path / "wider", runs, tolerance=0.02)[0]["recommendation"]
    assert rec["cheapest_within_tolerance"] == {"method": "lora", "value": 0.865, "why": rec["cheapest_within_tolerance"]["why"]}
    assert "llrd, lora" in rec["cheapest_within_tolerance"]["why"]
    assert rec["text"].startswith("Pick lora: 0.865 accuracy against llrd's 0.872, non-inferior at 95%")
    assert "29% less time" in rec["text"]  # 150 s vs 210 s
    assert "0.286 MB instead of 86.8 MB" in rec["text"]


def test_zero_tolerance_recommends_the_best(tmp_path, runs):
    rec = run_compare(tmp_path, runs, tolerance=0.0)[0]["recommendation"]
    assert rec["cheapest_within_tolerance"]["method"] == "llrd"
    assert rec["text"].startswith("Pick llrd: it has the best accuracy")


def test_pareto_flags(default_report):
    rows = by_method(default_report[0])
    # by trainable params: full has as many as llrd but lower accuracy, so llrd dominates it
    assert {m for m, r in rows.items() if r["pareto"]} == {"prompt_tuning", "lora", "llrd"}
    # by train time: lora is faster and more accurate than prompt_tuning
    assert {m for m, r in rows.items() if r["pareto_time"]} == {"lora", "full", "llrd"}


@pytest.mark.parametrize("budget, expected", [
    ({"memory_budget_mb": 1500}, ("within_memory_budget", "lora")),
    ({"memory_budget_mb": 1350}, ("within_memory_budget", "prompt_tuning")),
    ({"time_budget_s": 160}, ("within_time_budget", "lora")),
    ({"time_budget_s": 205}, ("within_time_budget", "full")),
])
def test_budgets_change_the_recommendation(tmp_path, runs, budget, expected):
    rec = run_compare(tmp_path, runs, **budget)[0]["recommendation"]
    key, method = expected
    assert rec[key]["method"] == method
    assert f"pick {method}" in rec["text"]


@pytest.mark.parametrize("budget, key", [({"memory_budget_mb": 1000}, "within_memory_budget"),
                                         ({"time_budget_s": 100}, "within_time_budget")])
def test_budget_that_nothing_fits(tmp_path, runs, budget, key):
    rec = run_compare(tmp_path, runs, **budget)[0]["recommendation"]
    assert rec[key]["method"] is None
    assert "No method fits" in rec[key]["note"] and "No method fits" in rec["text"]


def test_overfit_method_is_not_recommended_as_cheapest(tmp_path, runs):
    verdicts = {"full": "ok", "lora": "overfit", "prompt_tuning": "warn", "llrd": "ok"}
    result, out = run_compare(tmp_path, runs, verdicts, tolerance=0.02)
    rec = result["recommendation"]
    # lora is non-inferior within 2 points but skipped; full costs as much as llrd (5% less time is noise)
    assert rec["cheapest_within_tolerance"]["method"] == "llrd"
    assert "skipped as overfit: lora" in rec["cheapest_within_tolerance"]["why"]
    assert "lora as overfit" in rec["text"]
    assert by_method(result)["lora"]["overfitting"] == "overfit"
    lora_row = next(line for line in (out / "comparison.md").read_text().splitlines() if line.startswith("| lora "))
    assert "| overfit |" in lora_row
    assert "<td>overfit</td>" in (out / "comparison.html").read_text()


def test_overfit_method_is_picked_when_nothing_else_qualifies(tmp_path, runs):
    verdicts = {m: "overfit" for m in ("full", "lora", "llrd")}
    rec = run_compare(tmp_path, runs, verdicts, tolerance=0.02)[0]["recommendation"]
    assert rec["cheapest_within_tolerance"]["method"] == "lora"
    assert "all of them overfit" in rec["cheapest_within_tolerance"]["why"]


def test_markdown_has_a_row_per_method_and_the_plots(default_report):
    result, out = default_report
    md = (out / "comparison.md").read_text()
    assert md.startswith("# ") and md_text(result["recommendation"]["text"]) in md  # as markdown text (escaped)
    main_table, non_inferiority = md.split("## Non-inferiority")
    for method in RUNS:
        assert len([line for line in main_table.splitlines() if line.startswith(f"| {method} |")]) == 1
        # every method but the best (llrd) once more, against the best
        assert len([line for line in non_inferiority.splitlines() if line.startswith(f"| {method} |")]) == (method != "llrd")
    assert "| lora | 0.865 | n/a (1 seed) | -0.7 pts, worse (p<0.0001) |" in md
    assert "| 0.863 | 0.327% (74.5k) | 150.0 |" in md
    for name in PLOT_FILES:
        assert f"]({name})" in md


def test_html_is_self_contained(default_report):
    _, out = default_report
    page = (out / "comparison.html").read_text()
    links = re.findall(r'(?:src|href)\s*=\s*["\']?([^"\'\s>]*)', page, flags=re.IGNORECASE)
    assert links and not [link for link in links if link.startswith(("http://", "https://", "//"))]
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert page.count("data:image/png;base64,") == 4
    for method in RUNS:
        assert f"<td>{method}</td>" in page


def test_pngs_are_valid(default_report):
    _, out = default_report
    for name in PLOT_FILES:
        data = (out / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE, name
        assert len(data) > 10_000, name
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_missing_metrics_raises_and_writes_nothing(tmp_path, runs):
    broken = tmp_path / "runs" / "broken"
    broken.mkdir()
    (broken / "history.json").write_text("[]")
    out = tmp_path / "report"
    with pytest.raises(ValueError, match=re.escape(str(broken))):
        compare([*runs, broken], [None] * 5, ReportConfig(), out)
    assert not out.exists()


def test_seeds_give_mean_std_and_t_interval(tmp_path):
    accuracy = {"full": [0.80, 0.82, 0.84], "lora": [0.70, 0.71, 0.72]}
    runs = [write_run(tmp_path / m / str(seed), m, acc, FULL_PARAMS if m == "full" else 74_498, 100.0 + seed,
                      2000.0, 1000, seed=seed)
            for m, values in accuracy.items() for seed, acc in zip((1, 2, 3), values, strict=True)]
    result, out = run_compare(tmp_path, runs)
    full = by_method(result)["full"]
    # by hand: mean 0.82, s = 0.02, t(0.975, 2) = 4.3027, half width = 4.3027 * 0.02 / sqrt(3) = 0.04968
    assert full["accuracy"] == pytest.approx(0.82) and full["accuracy_std"] == pytest.approx(0.02)
    assert full["accuracy_ci"] == pytest.approx([0.82 - 0.04968, 0.82 + 0.04968], abs=1e-5)
    assert full["train_seconds"] == pytest.approx(102.0) and full["seeds"] == [1, 2, 3]
    assert by_method(result)["lora"]["vs_best"]["verdict"] == "worse"
    assert result["seeds"] == [1, 2, 3] and len(result["cells"]) == 6
    summary = {s["method"]: s for s in result["summary"]}
    assert summary["lora"]["n"] == 3 and summary["lora"]["mean"] == pytest.approx(0.71)
    assert "| full | 0.820 ± 0.020 | [0.770, 0.870] | best |" in (out / "comparison.md").read_text()


def test_data_size_sweep_names_the_winner_per_size_and_the_crossing(tmp_path):
    # prompt tuning leads at 100 examples, full fine-tuning at 2,000
    acc = {("prompt_tuning", 100): 0.70, ("full", 100): 0.60, ("prompt_tuning", 2000): 0.80, ("full", 2000): 0.88}
    runs = [write_run(tmp_path / m / f"{n}-{seed}", m, a + 0.01 * seed, FULL_PARAMS if m == "full" else 8_066,
                      10.0 * n / 100, 2000.0, 1000, seed=seed, train_size=n, n_train=n)
            for (m, n), a in acc.items() for seed in (0, 1)]
    result, out = run_compare(tmp_path, runs)
    assert [s["best"] for s in result["by_size"]] == ["prompt_tuning", "full"]
    assert result["crossings"] == [{"overtaker": "full", "overtaken": "prompt_tuning", "between": [100, 2000]}]
    assert "The lead passes from prompt_tuning to full between 100 and 2000 examples" in result["by_size_text"]
    assert [r["n_train"] for r in result["methods"]] == [2000, 2000]  # the recommendation is at the largest size
    md = (out / "comparison.md").read_text()
    assert "## Data-size sweep" in md and "full overtakes prompt_tuning between 100 and 2000" in md
    assert (out / "learning_curves.png").read_bytes()[:8] == PNG_SIGNATURE


def test_runs_on_other_test_sets_are_refused(tmp_path):
    runs = [write_run(tmp_path / "full", "full", *RUNS["full"]),
            write_run(tmp_path / "lora", "lora", 0.865, 74_498, 150.0, 1400.0, 300_000,
                      correct=first(0.865, N_TEST - 2))]
    with pytest.raises(ValueError, match="tested on other examples"):
        run_compare(tmp_path, runs)


def test_real_runs(make_config, tmp_path):
    cfg = make_config()
    runs = [tmp_path / method for method in ("full", "lora")]
    for run in runs:
        train(cfg, run.name, run)
    result = compare(runs, [None, None], cfg.report, tmp_path / "report")
    md = (tmp_path / "report" / "comparison.md").read_text()
    page = (tmp_path / "report" / "comparison.html").read_text()
    saved = json.loads((tmp_path / "report" / "comparison.json").read_text())
    assert [r["method"] for r in saved["methods"]] == [r["method"] for r in result["methods"]]
    for method in ("full", "lora"):
        assert method in {r["method"] for r in saved["methods"]}
        assert f"| {method} |" in md and f"<td>{method}</td>" in page
    assert saved["recommendation"]["cheapest_within_tolerance"]["method"] in ("full", "lora")
    assert page.count("data:image/png;base64,") == 4
