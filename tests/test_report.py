"""The compare stage: recommendation rules on hand-made runs, outputs that render offline, real runs."""

from __future__ import annotations

import json
import re

import pytest

from ftlab.config import ReportConfig
from ftlab.report import compare
from ftlab.train import train

FULL_PARAMS = 22_713_986
# method: accuracy, trainable params, train seconds, peak memory MB, artifact bytes
RUNS = {
    "full": (0.870, FULL_PARAMS, 200.0, 3000.0, 91_000_000),
    "lora": (0.865, 74_498, 150.0, 1400.0, 300_000),
    "prompt_tuning": (0.800, 8_066, 170.0, 1300.0, 40_000),
    "llrd": (0.872, FULL_PARAMS, 210.0, 3100.0, 91_000_000),
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_run(run_dir, method, accuracy, trainable, seconds, memory, artifact):
    run_dir.mkdir(parents=True)
    total = FULL_PARAMS + (0 if trainable == FULL_PARAMS else trainable)
    metrics = {
        "method": method, "accuracy": accuracy, "macro_f1": accuracy - 0.002,
        "trainable_params": trainable, "total_params": total,
        "trainable_percent": round(100 * trainable / total, 4), "train_seconds": seconds,
        "train_samples_per_second": round(3 * 7200 / seconds, 3), "peak_memory_mb": memory,
        "artifact_bytes": artifact, "eval_latency_ms_per_sample": 1.2, "n_train": 7200,
        "n_test": 2000, "best_step": 600,
    }
    history = [
        {"step": step, "epoch": step / 225, "train_loss": 0.7 - step / 2000, "train_accuracy": accuracy,
         "validation_loss": 0.65 - step / 2500, "validation_accuracy": accuracy - 0.1 + step / 6750,
         "validation_macro_f1": accuracy - 0.1 + step / 6750}
        for step in range(100, 700, 100)
    ]
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
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


def by_method(result):
    return {row["method"]: row for row in result["methods"]}


def test_json_has_one_row_per_method_and_is_what_compare_returns(tmp_path, runs):
    result, out = run_compare(tmp_path, runs)
    assert json.loads((out / "comparison.json").read_text()) == result
    assert set(result) == {"methods", "recommendation"}
    assert sorted(r["method"] for r in result["methods"]) == sorted(RUNS)
    for row in result["methods"]:
        for key in ("accuracy", "macro_f1", "trainable_params", "trainable_percent", "train_seconds",
                    "train_samples_per_second", "peak_memory_mb", "artifact_bytes", "overfitting", "pareto"):
            assert key in row, key
        assert row["overfitting"] is None  # no checks were run
    rec = result["recommendation"]
    assert rec["within_memory_budget"] is None and rec["within_time_budget"] is None


def test_best_and_cheapest_within_tolerance(tmp_path, runs):
    rec = run_compare(tmp_path, runs)[0]["recommendation"]
    assert rec["best_accuracy"] == {"method": "llrd", "accuracy": 0.872}
    # within 0.01 of 0.872: llrd, full, lora; lora trains the fewest parameters
    assert rec["cheapest_within_tolerance"]["method"] == "lora"
    assert rec["cheapest_within_tolerance"]["accuracy"] == 0.865
    assert "full" in rec["cheapest_within_tolerance"]["why"]
    assert "prompt_tuning" not in rec["cheapest_within_tolerance"]["why"]
    text = rec["text"]
    assert text.startswith("Pick lora: 0.865 accuracy, 0.7 points below llrd (0.872)")
    assert "29% less time" in text  # 150 s vs 210 s
    assert "0.286 MB instead of 86.8 MB" in text


def test_zero_tolerance_recommends_the_best(tmp_path, runs):
    rec = run_compare(tmp_path, runs, tolerance=0.0)[0]["recommendation"]
    assert rec["cheapest_within_tolerance"]["method"] == "llrd"
    assert rec["text"].startswith("Pick llrd: it has the best accuracy")


def test_pareto_flags(tmp_path, runs):
    rows = by_method(run_compare(tmp_path, runs)[0])
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
    result, out = run_compare(tmp_path, runs, verdicts)
    rec = result["recommendation"]
    # lora is skipped; full and llrd tie on parameters, and full trains faster
    assert rec["cheapest_within_tolerance"]["method"] == "full"
    assert "skipped as overfit: lora" in rec["cheapest_within_tolerance"]["why"]
    assert "lora as overfit" in rec["text"]
    assert by_method(result)["lora"]["overfitting"] == "overfit"
    lora_row = next(line for line in (out / "comparison.md").read_text().splitlines() if line.startswith("| lora "))
    assert "| overfit |" in lora_row
    assert "<td>overfit</td>" in (out / "comparison.html").read_text()


def test_overfit_method_is_picked_when_nothing_else_qualifies(tmp_path, runs):
    verdicts = {m: "overfit" for m in ("full", "lora", "llrd")}
    rec = run_compare(tmp_path, runs, verdicts)[0]["recommendation"]
    assert rec["cheapest_within_tolerance"]["method"] == "lora"
    assert "all of them overfit" in rec["cheapest_within_tolerance"]["why"]


def test_markdown_has_a_row_per_method_and_the_plots(tmp_path, runs):
    result, out = run_compare(tmp_path, runs)
    md = (out / "comparison.md").read_text()
    assert md.startswith("# ") and result["recommendation"]["text"] in md
    for method in RUNS:
        assert len([line for line in md.splitlines() if line.startswith(f"| {method} |")]) == 1
    assert "| lora | 0.865 | 0.863 | 0.327% (74.5k) | 150.0 |" in md
    for name in ("validation_curves.png", "accuracy_vs_trainable.png", "accuracy_vs_time.png"):
        assert f"]({name})" in md


def test_html_is_self_contained(tmp_path, runs):
    _, out = run_compare(tmp_path, runs)
    page = (out / "comparison.html").read_text()
    links = re.findall(r'(?:src|href)\s*=\s*["\']?([^"\'\s>]*)', page, flags=re.IGNORECASE)
    assert links and not [link for link in links if link.startswith(("http://", "https://", "//"))]
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert page.count("data:image/png;base64,") == 3
    for method in RUNS:
        assert f"<td>{method}</td>" in page


def test_pngs_are_valid(tmp_path, runs):
    _, out = run_compare(tmp_path, runs)
    for name in ("validation_curves.png", "accuracy_vs_trainable.png", "accuracy_vs_time.png"):
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
    assert page.count("data:image/png;base64,") == 3
