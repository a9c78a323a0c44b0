"""Fault injection with real processes and signals: interrupted runs resume and end identically."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ftlab.core.params import ConfigError
from ftlab.learning.config import load_config
from ftlab.training.train import train

pytestmark = pytest.mark.pipeline


def params_file(tmp_path: Path, make_config, **overrides) -> Path:
    """A run with checkpoints every 10 steps and 60 steps left after the second: time to stop it before
    it ends even when the test process waits a second or two for a core (20 left were not: the run
    finished, removing its checkpoints, before the signal came)."""
    cfg = make_config(**{"train__max_steps": 80, "train__eval_steps": 10, "train__early_stopping_patience": 0,
                         **overrides})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return path


def start_train(params: Path, method: str, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ftlab.cli", "train", "-m", method, "-p", str(params), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(root: Path, step: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any((p / "best_state.json").is_file() and int(p.name.split("-")[1]) >= step for p in root.glob("*/checkpoint-*")):
            return
        assert proc.poll() is None, f"run ended before checkpoint {step}: {proc.stderr.read()[-2000:]}"
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint {step} after {timeout}s")


def in_process(*args: str):
    """``ftlab ARGS`` in this process (typer's runner): its result, output and exit code."""
    from typer.testing import CliRunner

    from ftlab.cli import app

    return CliRunner().invoke(app, list(args))


def files(root: Path) -> dict:
    return {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def deterministic(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "cost"}


# full fine-tuning (the Trainer's own checkpoints) and a peft method (adapter checkpoints; LoRA saves and
# resumes through the same peft calls as prompt tuning, whose virtual tokens are the odd state here);
# ``earlier``: the killed runs write where an earlier result of another cell is, which they must keep
@pytest.mark.parametrize(("method", "earlier"), [("full", True), ("prompt_tuning", False)], ids=["full", "prompt_tuning"])
def test_killed_runs_resume_and_finish_like_an_uninterrupted_one(tmp_path, make_config, caplog, method, earlier):
    params = params_file(tmp_path, make_config)
    cfg = load_config(params)
    reference = train(cfg, method, tmp_path / "reference")

    out = tmp_path / "run"
    if earlier:  # in this process; the runs stopped below are processes
        train(load_config(params, {"train.max_steps": 2}), method, out)
    before = files(out)
    for sig, step, code in [(signal.SIGTERM, 10, 128 + signal.SIGTERM), (signal.SIGKILL, 20, -signal.SIGKILL)]:  # graceful, hard
        proc = start_train(params, method, out)
        wait_for_checkpoint(cfg.train.checkpoint_dir, step, proc)
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == code
        # nothing half-written where a later stage would read it: the earlier result byte for byte, or nothing
        assert out.exists() == earlier and files(out) == before
    # resumed after edits that do not change what the cell learns (its identity keys the checkpoints),
    # by the command in this process: the killed ones were processes, this one need not import torch again
    with caplog.at_level("INFO", logger="ftlab.training.train"):
        done = in_process("train", "-m", method, "-p", str(params), "--out", str(out),
                          "-S", "report.tolerance=0.05", "-S", "monitor.min_rows=10")
    assert done.exit_code == 0, f"{done.output[-3000:]}{done.exception!r}"
    assert any("resuming from" in r.getMessage() for r in caplog.records)
    resumed = json.loads((out / "metrics.json").read_text())
    assert deterministic(resumed) == deterministic(reference)
    assert json.loads((out / "history.json").read_text()) == json.loads((tmp_path / "reference/history.json").read_text())
    assert not any(cfg.train.checkpoint_dir.iterdir())  # a finished run removes its checkpoints
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no orphaned temporaries


def test_remote_code_is_refused_unless_enabled(tmp_path, make_config, tiny_model):
    import shutil

    custom = tmp_path / "custom-model"
    shutil.copytree(tiny_model, custom)
    config = json.loads((custom / "config.json").read_text())
    config.update({"model_type": "ftlab-custom", "auto_map": {"AutoConfig": "configuration_custom.CustomConfig"}})
    (custom / "config.json").write_text(json.dumps(config))
    (custom / "configuration_custom.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(ValueError, match=r"needs custom code; set model\.trust_remote_code: true"):
        train(make_config(model__name=str(custom)), "full", tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_config_errors_name_the_field_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.learning_rate: unknown key"):
        load_config(None, {"train.learning_rate": 0.1})


def test_absurdly_long_texts_are_truncated_with_a_warning(tmp_path, make_config, caplog):
    import pandas as pd

    from tests.conftest import toy_reviews

    data = toy_reviews(120)
    data.loc[0, "text"] = "great " * 20_000  # 20,000 words in one review
    data.to_csv(tmp_path / "long.csv", index=False)
    cfg = make_config(data__source=str(tmp_path / "long.csv"), train__max_steps=2)
    with caplog.at_level("WARNING", logger="ftlab.training.train"):
        metrics = train(cfg, "lora", tmp_path / "run")
    assert any("longer than model.max_length=128 were truncated" in r.getMessage() for r in caplog.records)
    assert metrics["n_train"] + metrics["n_validation"] + metrics["n_test"] == 120
    assert pd.read_parquet(tmp_path / "run/predictions.parquet")["prediction"].notna().all()


def test_no_token_is_ever_logged_or_saved(tmp_path, make_config):
    token = "hf_ftlabSECRETtoken1234567890"
    params = params_file(tmp_path, make_config, train__max_steps=4)
    env = {**os.environ, "HF_TOKEN": token, "HUGGING_FACE_HUB_TOKEN": token}
    done = subprocess.run([sys.executable, "-m", "ftlab.cli", "-v", "train", "-m", "lora", "-p", str(params),
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert token not in done.stdout + done.stderr
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path


@pytest.mark.skipif(sys.platform != "linux", reason="needs RLIMIT_AS and /proc")
def test_out_of_memory_says_what_to_lower_and_keeps_the_previous_result(tmp_path, make_config):
    """Real out-of-memory: the CLI runs under an address-space limit that fits a normal run, not a huge batch."""
    from tests.conftest import toy_reviews

    data = toy_reviews(3000)
    data["text"] += " the movie was a story" * 60  # every text fills model.max_length=256
    data.to_csv(tmp_path / "long.csv", index=False)
    common = {"data__source": str(tmp_path / "long.csv"), "data__max_validation_samples": 16,
              "data__max_test_samples": 16, "model__max_length": 256, "train__max_steps": 2}
    fits = params_file(tmp_path, make_config, train__batch_size=16, **common)
    raw = yaml.safe_load(fits.read_text())
    raw["train"]["batch_size"] = 4096
    huge = tmp_path / "huge.yaml"
    huge.write_text(yaml.safe_dump(raw))

    # one thread and few malloc arenas, on the CPU: the address space then grows with the tensors, not the cores
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2", "CUDA_VISIBLE_DEVICES": "",
           "TOKENIZERS_PARALLELISM": "false"}
    # each run imports what training needs, limits its address space to what that took (shared libraries,
    # thread stacks) + 1.5 GiB, then is `python -m ftlab.cli` (no probe process measuring the imports
    # first): a run with batch 16 needs about 0.15 GiB more; batch 4096 (all 2,100 train rows) needs
    # 2.1 GiB for one attention matrix alone
    limited = ("import resource, runpy, sys\n"
               "import ftlab.cli, ftlab.training.train, datasets, peft, transformers.trainer, torch.utils.tensorboard\n"
               "limit = 1024 * next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmPeak')) + 3 * 2**29\n"
               "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
               "print(f'address space limited to {limit / 2**30:.2f} GiB', file=sys.stderr)\n"
               "runpy.run_module('ftlab.cli', run_name='__main__', alter_sys=True)\n")
    out = tmp_path / "run"

    def cli_train(params: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", limited, "train", "-m", "full", "-p", str(params), "--out", str(out)],
                              capture_output=True, text=True, env=env)

    first = cli_train(fits)
    assert first.returncode == 0, f"batch 16 must fit:\n{first.stdout[-2000:]}{first.stderr[-3000:]}"
    assert "address space limited to" in first.stderr, first.stderr[-3000:]
    before = files(out)

    failed = cli_train(huge)
    said = " ".join(failed.stdout.split())  # rich wraps the message at the terminal width
    assert failed.returncode == 1, failed.stdout[-2000:] + failed.stderr[-3000:]
    assert ("error: full: out of memory at batch size 4096, max length 256; "
            "lower train.batch_size or model.max_length") in said, said[-1000:] + failed.stderr[-3000:]
    assert "Traceback" not in failed.stdout + failed.stderr
    assert files(out) == before  # the earlier result, byte for byte
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no half-written run dir


def test_divergence_after_a_checkpoint_keeps_that_checkpoint(tmp_path, make_config):
    """lr 10 with weight decay 1: once warmup lifts lr·weight_decay above 2, every AdamW step multiplies the
    weights by |1 - lr·wd| > 1, and the loss overflows to NaN some steps after the first checkpoint."""
    import re

    from safetensors.torch import load_file

    params = params_file(tmp_path, make_config, train__max_steps=60, train__warmup_ratio=0.5,
                         train__weight_decay=1.0, method_params__full={"lr": 10.0})
    cfg = load_config(params)
    assert (cfg.train.eval_steps, cfg.train.logging_steps) == (10, 10)
    out = tmp_path / "run"
    done = in_process("train", "-m", "full", "-p", str(params), "--out", str(out))
    said = " ".join(done.output.split())
    assert done.exit_code == 1 and isinstance(done.exception, SystemExit), f"{said[-3000:]}{done.exception!r}"  # no crash
    found = re.search(r"error: full: training loss became (nan|-?inf) by step (\d+); lower method_params\.full\.lr", said)
    assert found, said[-3000:]
    assert "Traceback" not in done.output
    step = int(found.group(2))
    assert 20 <= step <= 60
    # the loss is logged before the checkpoint of the same step is saved: the NaN never reaches a checkpoint
    [kept] = cfg.train.checkpoint_dir.glob("full-*/checkpoint-*")
    assert kept.name == f"checkpoint-{step - 10}"
    assert (kept / "best_state.json").is_file()  # written last: the checkpoint is complete
    assert json.loads((kept / "trainer_state.json").read_text())["global_step"] == step - 10
    weights = load_file(kept / "model.safetensors")
    assert weights and all(t.isfinite().all() for t in weights.values())
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
