"""The ftlab command line, end to end, in real subprocesses; one run on the real MiniLM (in this process)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ftlab.learning.methods import METHODS


def ftlab(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ftlab.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_methods_lists_one_line_per_method():
    out = ftlab("methods")
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    for name in METHODS:
        assert any(line.split()[0] == name for line in lines), name


@pytest.mark.parametrize("command", [[], ["methods"], ["search"], ["train"], ["prepare"], ["merge"]])
def test_help_on_every_command(command):
    out = ftlab(*command, "--help")
    assert out.returncode == 0 and "Usage" in out.stdout


def test_bad_method_and_bad_params_exit_non_zero(tmp_path):
    out = ftlab("train", "--method", "nope", "--out", str(tmp_path / "run"))
    assert out.returncode == 1 and "unknown method 'nope'" in out.stdout
    bad = tmp_path / "params.yaml"
    bad.write_text("method_params: {lora: {r: 0}}\n")
    out = ftlab("train", "--method", "lora", "--params", str(bad), "--out", str(tmp_path / "run"))
    assert out.returncode == 1 and "method_params.lora.r" in out.stdout
    out = ftlab("train", "--method", "lora", "-S", "seeds=[1, 2]", "--out", str(tmp_path / "run"))
    assert out.returncode == 1 and "selects 2 runs" in out.stdout
    assert not (tmp_path / "run").exists()


def test_train_lora_on_the_real_minilm_and_demo_data(tmp_path, monkeypatch):
    """The default model and data, tiny budget: the whole CLI path offline, run directory complete.
    MiniLM takes seconds a batch on one thread: two steps of 8 rows, 8 train and 10 validation rows scored per eval.
    The command runs in this process (typer's runner): the tests above prove the command line as a
    process, and a process of its own paid seconds of importing torch, transformers and peft again."""
    from typer.testing import CliRunner

    from ftlab.cli import app

    params = tmp_path / "params.yaml"
    params.write_text(
        "data: {demo: {n_samples: 100}, prepared_dir: data}\n"
        "train: {max_steps: 2, eval_steps: 1, batch_size: 8, train_eval_samples: 8, threads: 1}\n"
    )  # one torch thread: the test process's share of the cores, kept for the tests after this one
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(app, ["train", "--method", "lora", "--params", str(params), "--out", "run"])
    assert out.exit_code == 0, f"{out.output[-3000:]}{out.exception!r}"
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["total_params"] > 22_000_000  # the real 22.7M-parameter MiniLM + head
    assert metrics["trainable_params"] == 6 * 2 * 2 * 8 * 384 + (384 * 2 + 2)  # LoRA r=8 q/v, 6 layers + head
    assert metrics["n_test"] == 20 and 0 <= metrics["accuracy"] <= 1
    assert (run / "model/adapter_model.safetensors").stat().st_size < 1_000_000
    assert [h["step"] for h in json.loads((run / "history.json").read_text())] == [0, 1, 2]


def test_errors_are_printed_verbatim_brackets_and_carets_included(tmp_path):
    """A YAML error keeps its context and caret line: nothing in [brackets] is read as Rich markup."""
    bad = tmp_path / "params.yaml"
    bad.write_text("seed: 1\nmethods: [lora\n")
    out = ftlab("prepare", "--params", str(bad))
    assert out.returncode == 1
    assert "methods: [lora" in out.stdout and "^" in out.stdout, out.stdout
    assert "expected ',' or ']', but got" in out.stdout, out.stdout
    (tmp_path / "elsewhere").mkdir()  # no params.yaml there: defaults and the -S value
    out = ftlab("prepare", "-S", 'data.source="[bold]x[/bold] :smile: [red]y.csv"', cwd=tmp_path / "elsewhere")
    assert out.returncode == 1 and "data file not found: [bold]x[/bold] :smile: [red]y.csv" in out.stdout, out.stdout
    out = ftlab("prepare", "-S", "data.source=[bold]x[/bold]", cwd=tmp_path / "elsewhere")  # not YAML: an error, not a traceback
    assert out.returncode == 1 and "--set data.source=[bold]x[/bold]: the value is not valid YAML" in out.stdout, out


def test_pipeline_reports_a_bad_param_before_starting_prefect(tmp_path):
    """A typo in `methods`, from a -S override or from the params file, fails with the field's name
    before Prefect starts its temporary server or a flow run (neither logs a line)."""
    params = tmp_path / "params.yaml"
    params.write_text("seed: 1\nmethods: [full, lorra]\n")
    for args in (["-S", "methods=[lorra]"], ["--params", str(params)]):
        out = ftlab("pipeline", *args, cwd=tmp_path)
        output = out.stdout + out.stderr
        assert out.returncode == 1, output
        assert "methods: unknown method(s) ['lorra']" in out.stdout, output
        assert "Traceback" not in output and "flow run" not in output and "temporary server" not in output, output
    assert "(line 2)" in out.stdout, out.stdout  # the params file's line of the bad key
    assert "--set" in ftlab("pipeline", "--help").stdout


def test_a_directory_as_params_file_is_named_as_such(tmp_path):
    out = ftlab("prepare", "--params", str(tmp_path))
    assert out.returncode == 1 and "is a directory" in out.stdout, out.stdout


def test_validate_prepares_first_and_never_checks_stale_data(tmp_path):
    from tests.conftest import toy_reviews

    toy_reviews(120).to_csv(tmp_path / "good.csv", index=False)
    (tmp_path / "bad.csv").write_bytes(b"text,label\ncaf\xe9 ok,1\n")
    params = tmp_path / "params.yaml"
    params.write_text("data: {source: good.csv}\n")
    # before any prepare: prepares, validates, and says what passed and where the Data Docs are
    out = ftlab("validate", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    checks = json.loads((tmp_path / "reports/validation/result.json").read_text())["checks"]
    assert all(c["success"] for c in checks)
    assert f"validation passed: all {len(checks)} checks on train, validation, test; Data Docs: " \
           "reports/validation/data_docs/index.html" in out.stdout, out.stdout
    # a failed prepare (a bad file) leaves the earlier prepared data; validate must not pass on it
    params.write_text("data: {source: bad.csv}\n")
    assert ftlab("prepare", cwd=tmp_path).returncode == 1
    out = ftlab("validate", cwd=tmp_path)
    assert out.returncode == 1 and "bad.csv: line 2, column 4: not valid UTF-8" in out.stdout, out.stdout
