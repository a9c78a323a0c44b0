"""A bad params file fails at load, naming the field."""

from __future__ import annotations

import pytest

from ftlab.config import ConfigError, dump_config, load_config


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
