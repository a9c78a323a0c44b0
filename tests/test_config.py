"""A bad params file fails at load, naming the field."""

from __future__ import annotations

import pytest

from ftlab.core.params import ConfigError
from ftlab.learning.config import dump_config, load_config


def load_yaml(tmp_path, text: str):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return load_config(path)


def test_defaults_are_valid_and_round_trip(tmp_path):
    cfg = load_config()
    assert cfg.methods == ["full", "llrd", "lora", "prompt_tuning"]
    assert load_yaml(tmp_path, dump_config(cfg)) == cfg


@pytest.mark.parametrize(
    ("text", "field", "problem"),
    [
        ("methods: [full, lorra]", "methods", "unknown method"),
        ("methods: []", "methods", "at least one method"),
        ("methods: null", "methods", "at least one method"),
        ("methods: [full, full]", "methods", "lists a method twice"),
        # issue 37: an empty list planned no cell under one driver and another grid under the other
        ("seeds: []", "seeds", "at least one seed, e.g. [42]"),
        ("seeds: null", "seeds", "at least one seed"),
        ("seeds: [1, 1]", "seeds", "lists a value twice"),
        ("train_sizes: []", "train_sizes", "at least one train size, e.g. [all]"),
        ("train_sizes: [100, 100.0]", "train_sizes", "lists a value twice"),
        ("trian: {epochs: 1}", "trian", "unknown key"),
        ("train: {epoch: 1}", "train.epoch", "unknown key"),
        ("method_params: {lora: {rank: 4}}", "method_params.lora.rank", "unknown key"),
        ("method_params: {lora: {r: 0}}", "method_params.lora.r", "greater than or equal to 1"),
        ("method_params: {full: {lr: -0.001}}", "method_params.full.lr", "greater than 0"),
        ("method_params: {llrd: {decay: 1.5}}", "method_params.llrd.decay", "less than or equal to 1"),
        ("method_params: {llrd: {decay: 0}}", "method_params.llrd.decay", "greater than 0"),
        ("train: {batch_size: many}", "train.batch_size", "valid integer"),
        ("model: {pooling: max}", "model.pooling", "'mean' or 'cls'"),
        ("method_params: {adapter: {peft_type: NOPE}}", "method_params.adapter.peft_type", "unknown peft_type"),
        ("data: {validation_size: 0.45, test_size: 0.45}", "<root>", "at least 10% to train"),
    ],
)
def test_bad_values_name_the_field(tmp_path, text, field, problem):
    with pytest.raises(ConfigError) as info:
        load_yaml(tmp_path, text)
    message = str(info.value)
    assert f"{field}:" in message and problem in message, message


def test_bad_values_give_their_line_in_the_file_unless_overridden(tmp_path):
    text = "seed: 1\nmodel:\n  name: x\n  encoder_dropout: 1.5\ntrain: {epochs: 1, batch_size: 0}\n"
    with pytest.raises(ConfigError) as info:
        load_yaml(tmp_path, text)
    message = str(info.value)
    assert "model.encoder_dropout: Input should be less than 1 (line 4)" in message, message
    assert "train.batch_size: Input should be greater than 0 (line 5)" in message, message
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "params.yaml", {"model.encoder_dropout": 0.0, "train.batch_size": -1})
    assert "train.batch_size: Input should be greater than 0\n" in str(info.value) + "\n", str(info.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(tmp_path, "train: [unclosed")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_yaml(tmp_path, "- a list")


def test_overrides_use_dotted_keys():
    cfg = load_config(None, {"method_params.lora.r": 16, "train.epochs": 1})
    assert cfg.params_for("lora").r == 16 and cfg.train.epochs == 1


# ---- issue 26: a params file is read strictly, and every error names the file and line ------------
@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_an_empty_params_file_is_an_error_not_the_demo(tmp_path, text):
    with pytest.raises(ConfigError, match=r"params\.yaml.*empty"):
        load_yaml(tmp_path, text)


@pytest.mark.parametrize(("text", "key", "line"), [
    ("seed: 1\nmethods: [full]\nseed: 2\n", "seed", 3),
    ("data:\n  source: a.csv\n  test_size: 0.2\n  source: b.csv\n", "data.source", 4),
    ("train: {epochs: 1, epochs: 2}\n", "train.epochs", 1),
])
def test_a_duplicated_key_is_an_error_naming_it_and_its_lines(tmp_path, text, key, line):
    with pytest.raises(ConfigError) as info:
        load_yaml(tmp_path, text)
    message = str(info.value)
    assert "params.yaml" in message and f"{key!r}" in message and f"line {line}" in message, message


def test_a_fifo_or_symlink_loop_as_params_file_says_what_it_is(tmp_path):
    import os

    os.mkfifo(tmp_path / "fifo.yaml")
    with pytest.raises(ConfigError, match="FIFO") as info:
        load_config(tmp_path / "fifo.yaml")
    assert "not found" not in str(info.value)
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="symbolic link") as info:
        load_config(tmp_path / "a.yaml")
    assert "not found" not in str(info.value)


def test_a_non_utf8_params_file_names_the_line_and_column(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes("seed: 1\ndata:\n  source: caf\u00e9.csv\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and "line 3, column 14" in message and "UTF-8" in message, message


@pytest.mark.parametrize("value", ["null", "[a.csv, b.csv]", "3"])
def test_a_wrong_type_of_data_source_is_explained_plainly(tmp_path, value):
    with pytest.raises(ConfigError) as info:
        load_yaml(tmp_path, f"data:\n  source: {value}\n")
    message = str(info.value)
    assert "data.source:" in message and "(line 2)" in message and "{train: FILE" in message, message
    assert "lax-or-strict" not in message and "literal[" not in message.lower(), message


def test_a_params_file_that_cannot_be_read_says_so(tmp_path):
    (tmp_path / "params.yaml").symlink_to("/proc/self/mem")  # a regular file whose read fails (EIO)
    with pytest.raises(ConfigError, match=r"params\.yaml cannot be read"):
        load_config(tmp_path / "params.yaml")


# ---- issue 37: the grid's lists, empty, under both drivers ---------------------------------------
def test_seeds_left_out_train_at_seed_and_an_empty_list_names_its_line(tmp_path):
    assert load_yaml(tmp_path, "seed: 7\n").seeds == [7]
    with pytest.raises(ConfigError) as info:
        load_yaml(tmp_path, "seed: 7\nmethods: [full]\nseeds: []\n")
    assert "seeds: must list at least one seed, e.g. [42] (line 3)" in str(info.value), str(info.value)
    with pytest.raises(ConfigError, match=r"train_sizes: must list at least one train size"):
        load_config(None, {"train_sizes": []})  # ftlab -S train_sizes=[] and dvc exp run -S alike


def test_plan_with_no_train_size_refuses_and_keeps_the_earlier_plan(tmp_path, monkeypatch):
    """`ftlab plan` (dvc.yaml's plan stage) used to plan 0 cells and delete the earlier plan files."""
    from typer.testing import CliRunner

    from ftlab.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("methods: [full]\ntrain_sizes: []\n")
    earlier = tmp_path / "reports/plan/full/s42-nall.json"
    earlier.parent.mkdir(parents=True)
    earlier.write_text("{}")
    result = CliRunner().invoke(app, ["plan"])
    assert result.exit_code == 1 and "train_sizes: must list at least one train size" in result.output, result.output
    assert earlier.read_text() == "{}"


def test_overrides_leave_the_callers_values_unchanged():
    """A dict given for a section and a dotted key below it: the config gets both, the caller's dict neither."""
    task = {"type": "regression", "text_column": "a", "text_pair_column": "b"}
    cfg = load_config(None, {"task": task, "task.text_pair_column": None})
    assert cfg.task.text_pair_column is None
    assert task == {"type": "regression", "text_column": "a", "text_pair_column": "b"}
