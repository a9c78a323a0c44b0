"""The causal_lm task on tiny randomly initialised decoders (LLaMA-style and GPT-2) built here:
loss mask, left-padded generation, every method end to end with reload and merge, learning on a
built-in synthetic dataset through the CLI, and the named errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from ftlab.core.params import ConfigError
from ftlab.data.prepare import DataError, prepare
from ftlab.learning.config import load_config
from ftlab.learning.methods import METHODS
from ftlab.learning.tasks import TASKS
from ftlab.learning.tasks.synthetic import synthetic
from ftlab.learning.tiny_decoder import build as build_model
from tests.frozen_heap import frozen_heap, unfrozen_after_module  # noqa: F401  (autouse: tests on a frozen heap)


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> str:
    return build_model(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory) -> str:
    return build_model(tmp_path_factory.mktemp("tiny-gpt2"), "gpt2")


@pytest.fixture(scope="module")
def llama_chat(tmp_path_factory) -> str:
    return build_model(tmp_path_factory.mktemp("tiny-llama-chat"), "llama", chat=True)


def config(tmp_path: Path, model: str, task: dict | None = None, **overrides):
    values = {"task": {"type": "causal_lm", "max_new_tokens": 6, **(task or {})},
              "data": {"source": "builtin:reverse", "demo": {"n_samples": 60}, "prepared_dir": str(tmp_path / "data")},
              "model": {"name": model, "max_length": 32},
              "train": {"batch_size": 8, "eval_batch_size": 16, "eval_steps": 2, "max_steps": 4, "train_eval_samples": 8,
                        "threads": 1, "precision": "fp32", "early_stopping_patience": 0,
                        "output_dir": str(tmp_path / "runs"), "checkpoint_dir": None}}
    for key, value in overrides.items():
        section, field = key.split("__")
        values.setdefault(section, {})[field] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(values))
    return load_config(path)


def tokenized(cfg, model: str, df: pd.DataFrame):
    from ftlab.learning.modeling import load_tokenizer

    tokenizer = load_tokenizer(cfg.model)
    return tokenizer, cfg.task_type().tokenize(df, tokenizer, cfg.model.max_length, [])


# ---- 1. data and the loss mask ------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_the_loss_mask_covers_exactly_the_response_and_eos(tmp_path, llama, gpt2, arch):
    model = {"llama": llama, "gpt2": gpt2}[arch]
    cfg = config(tmp_path, model)
    tokenizer, ds = tokenized(cfg, model, pd.DataFrame({"text": ["reverse: a b c"], "label": ["c b a"]}))
    ids, labels = ds[0]["input_ids"], ds[0]["labels"]
    prompt = ["user:", "reverse:", "a", "b", "c", "assistant:"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens == (["<s>"] if arch == "llama" else []) + prompt + ["c", "b", "a", "</s>"]
    start = ds[0]["prompt_length"]
    assert start == len(ids) - 4
    assert labels[:start] == [-100] * start and labels[start:] == ids[start:]


def test_chat_messages_use_the_chat_template_and_mask_the_whole_prompt(tmp_path, llama_chat):
    cfg = config(tmp_path, llama_chat, {"messages_column": "messages"})
    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "copy: a b"},
            {"role": "assistant", "content": "a b"}]
    raw = pd.DataFrame({"messages": [json.dumps(chat)]})
    task = cfg.task_type()
    task.check_rows(raw, "train")
    encoded, _ = task.encode({"train": raw})
    assert encoded["train"]["label"][0] == "a b"
    tokenizer, ds = tokenized(cfg, llama_chat, encoded["train"])
    tokens = tokenizer.convert_ids_to_tokens(ds[0]["input_ids"])
    assert tokens == ["<system>", "be", "brief", "<user>", "copy:", "a", "b", "<assistant>", "a", "b", "</s>"]
    assert [t for t, y in zip(tokens, ds[0]["labels"], strict=True) if y != -100] == ["a", "b", "</s>"]


def test_no_chat_template_falls_back_to_plain_or_is_named_when_required(tmp_path, llama):
    df = pd.DataFrame({"text": ["copy: a"], "label": ["a"]})
    tokenizer, ds = tokenized(config(tmp_path, llama), llama, df)
    assert tokenizer.convert_ids_to_tokens(ds[0]["input_ids"])[1:3] == ["user:", "copy:"]
    with pytest.raises(ValueError, match=r"task.chat_template: required.*no chat template"):
        tokenized(config(tmp_path, llama, {"chat_template": "required", "messages_column": "m"}), llama, df)


def test_a_response_over_max_length_is_cut_and_reported(tmp_path, llama, caplog):
    cfg = config(tmp_path, llama, model__max_length=10)
    df = pd.DataFrame({"text": ["copy: a", "copy: a b"], "label": ["a", "a b c d e f"]})
    _, ds = tokenized(cfg, llama, df)
    assert [len(ids) for ids in ds["input_ids"]] == [7, 10]
    assert ds[1]["labels"][-1] != 2  # the cut response lost its EOS
    assert "1 of 2 response(s) cut at model.max_length=10" in caplog.text
    with pytest.raises(DataError, match=r"1 prompt\(s\) fill model.max_length=10 tokens.*rows \[0\]"):
        tokenized(cfg, llama, pd.DataFrame({"text": ["copy: a b c d e f"], "label": ["a"]}))


@pytest.mark.parametrize(("rows", "task", "match"), [
    ({"question": ["copy: a"], "response": ["a"]}, {}, r"missing column\(s\) \['prompt'\].*task.prompt_column"),
    ({"prompt": ["copy: a", "copy: b"], "response": ["a", " "]}, {}, r"1 null or empty response\(s\).*data\.csv:3"),
    ({"chat": [json.dumps([{"role": "user", "content": "x"}])]}, {"messages_column": "chat"},
     r"data\.csv:2: messages must be a list of at least a prompt and a response"),
])
def test_bad_input_is_named(tmp_path, llama, rows, task, match):
    pd.DataFrame(rows).to_csv(tmp_path / "data.csv", index=False)
    cfg = config(tmp_path, llama, task, data__source=str(tmp_path / "data.csv"))
    with pytest.raises(DataError, match=match):
        prepare(cfg)


def test_config_refuses_the_probe_and_the_classification_columns():
    with pytest.raises(ConfigError, match="method 'probe' cannot train task 'causal_lm'"):
        load_config(None, {"task.type": "causal_lm", "methods": ["probe"]})
    with pytest.raises(ConfigError, match=r"not task\.text_column"):
        load_config(None, {"task.type": "causal_lm", "task.text_column": "q"})


def test_synthetic_datasets_are_distinct_and_deterministic():
    df = synthetic("reverse", 200, seed=1)
    assert df["prompt"].is_unique and df.equals(synthetic("reverse", 200, seed=1))
    # and in another process, whose string hashes differ
    code = "from ftlab.learning.tasks.synthetic import synthetic; print(synthetic('reverse', 200, seed=1).to_json())"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert other.stdout.strip() == df.to_json()
    row = df.iloc[0]
    assert row["prompt"].split()[1:][::-1] == row["response"].split()
    assert synthetic("sort", 5, 0)["response"].map(lambda r: r.split() == sorted(r.split())).all()


# ---- 2. the model: anatomy, generation ----------------------------------------------------------

def test_a_tied_lm_head_is_the_embeddings_and_never_a_head_to_save(gpt2, llama):
    from transformers import AutoModelForCausalLM

    from ftlab.learning.methods.base import head_modules
    from ftlab.learning.modeling import model_parts

    tied = AutoModelForCausalLM.from_pretrained(gpt2)
    parts = model_parts(tied)
    assert any(p is tied.lm_head.weight for _, p in parts.embeddings)
    assert [n for n, _ in parts.head] == ["transformer.ln_f.weight", "transformer.ln_f.bias"]
    untied = model_parts(AutoModelForCausalLM.from_pretrained(llama))
    assert [n for n, _ in untied.head] == ["model.norm.weight", "lm_head.weight"] and len(untied.layers) == 2
    assert head_modules(tied) == [] == head_modules(AutoModelForCausalLM.from_pretrained(llama))


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_left_padded_batched_generation_equals_one_prompt_at_a_time(tmp_path, llama, gpt2, arch):
    from transformers import AutoModelForCausalLM

    from ftlab.learning.generation import generate

    model_dir = {"llama": llama, "gpt2": gpt2}[arch]
    cfg = config(tmp_path, model_dir)
    prompts = pd.DataFrame({"text": ["copy: a", "reverse: a b c d e", "sort: h g"], "label": ["a", "e", "g h"]})
    tokenizer, ds = tokenized(cfg, model_dir, prompts)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    inputs = [ids[:n] for ids, n in zip(ds["input_ids"], ds["prompt_length"], strict=True)]
    batched = generate(model, tokenizer, inputs, max_new_tokens=8)
    assert batched == [generate(model, tokenizer, [p], max_new_tokens=8)[0] for p in inputs]
    assert all(len(a) > 0 for a in batched)


@pytest.mark.parametrize("method", ["lora", "prompt_tuning", "prefix_tuning"])
def test_generation_is_the_argmax_continuation_for_every_kind_of_peft_model(tmp_path, llama, method):
    """Checked against a full forward pass per token: peft's cached generate() is not that for its
    prompt methods (peft 0.21, transformers 5.24; see cached_generation_is_wrong), which ftlab avoids."""
    from transformers import AutoModelForCausalLM

    from ftlab.learning.generation import generate, stop_ids

    cfg = config(tmp_path, llama)
    model = METHODS[method].prepare(AutoModelForCausalLM.from_pretrained(llama), cfg.params_for(method), "CAUSAL_LM").eval()
    for p in model.parameters():  # a trained-looking model: zero-initialised adapters would change nothing
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.5)
    tokenizer, ds = tokenized(cfg, llama, pd.DataFrame({"text": ["copy: a b", "sort: h g c"], "label": ["a b", "c g h"]}))
    prompts = [ids[:n] for ids, n in zip(ds["input_ids"], ds["prompt_length"], strict=True)]
    stops = stop_ids(model, tokenizer)
    expected = []
    for prompt in prompts:
        ids: list[int] = list(prompt)
        with torch.inference_mode():
            for _ in range(6):
                x = torch.tensor([ids])
                token = int(model(input_ids=x, attention_mask=torch.ones_like(x)).logits[0, -1].argmax())
                if token in stops:
                    break
                ids.append(token)
        expected.append(ids[len(prompt):])
    assert generate(model, tokenizer, prompts, max_new_tokens=6) == expected


# ---- 3. every method trains, saves, reloads and merges -------------------------------------------

def regenerate(run: Path, model: torch.nn.Module) -> list[str]:
    """Greedy answers of ``model`` to the run's test prompts, tokenised by the run's tokenizer."""
    from transformers import AutoTokenizer

    from ftlab.analysis.runs import load_run
    from ftlab.data.prepare import load_prepared
    from ftlab.learning.generation import generate_and_score

    cfg = load_run(run)[0]
    tokenizer = AutoTokenizer.from_pretrained(str(run / "tokenizer"))
    task = cfg.task_type()
    ds = task.tokenize(load_prepared(cfg)[0]["test"], tokenizer, cfg.model.max_length, [])
    rows = generate_and_score(model, tokenizer, ds, task.collator(tokenizer), 16, False, task.opts.max_new_tokens)
    return [r["prediction"] for r in rows]


@pytest.mark.parametrize("method", [m for m in METHODS if m not in TASKS["causal_lm"].unsupported_methods])
def test_every_method_trains_saves_reloads_and_merges(tmp_path, llama, method):
    from ftlab.analysis.runs import load_run, merge_adapter
    from ftlab.learning.modeling import load_trained
    from ftlab.training.train import train

    cfg = config(tmp_path, llama, train__metric_for_best="loss")  # the best weights are trained ones
    run = tmp_path / "run"
    metrics = train(cfg, method, run)
    assert metrics["task"] == "causal_lm" and metrics["primary_metric"] == "exact_match"
    assert np.isfinite(metrics["perplexity"]) and 0 < metrics["trainable_params"] <= metrics["total_params"]
    predictions = pd.read_parquet(run / "predictions.parquet")
    assert {"text", "label", "prediction", "exact_match", "token_f1"} <= set(predictions.columns)
    reloaded = load_run(run)[1]
    assert regenerate(run, reloaded) == list(predictions["prediction"])
    if method in ("lora", "dora", "ia3"):
        merged_dir = merge_adapter(run, tmp_path / "merged")
        merged = load_trained(cfg.model, [], merged_dir, adapter=False, task=cfg.task_type())
        assert regenerate(run, merged) == list(predictions["prediction"])


def test_lora_on_a_tied_gpt2_with_checkpointing_merges_into_one_shared_matrix(tmp_path, gpt2):
    from safetensors import safe_open

    from ftlab.analysis.runs import merge_adapter
    from ftlab.learning.modeling import load_trained
    from ftlab.training.train import train

    cfg = config(tmp_path, gpt2, task={"gradient_checkpointing": True}, train__metric_for_best="loss")
    train(cfg, "lora", tmp_path / "run")
    merged = merge_adapter(tmp_path / "run", tmp_path / "merged")
    with safe_open(str(merged / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert len(keys & {"transformer.wte.weight", "lm_head.weight"}) == 1 and not any("lora" in k for k in keys)
    model = load_trained(cfg.model, [], merged, adapter=False, task=cfg.task_type())
    assert model.lm_head.weight is model.transformer.wte.weight
    assert regenerate(tmp_path / "run", model) == list(pd.read_parquet(tmp_path / "run" / "predictions.parquet")["prediction"])


# ---- 4. learning, end to end through the CLI ---------------------------------------------------

def test_full_fine_tuning_learns_to_copy_through_the_cli(tmp_path, llama, monkeypatch):
    """A random 2-layer decoder learns builtin:copy: exact match rises from 0 on the test split."""
    params = {"task": {"type": "causal_lm", "max_new_tokens": 8},
              "data": {"source": "builtin:copy", "demo": {"n_samples": 300}, "prepared_dir": "data"},
              "model": {"name": llama, "max_length": 32},
              "train": {"batch_size": 16, "max_steps": 150, "eval_steps": 50, "train_eval_samples": 32, "threads": 1,
                        "precision": "fp32", "checkpoint_dir": None},
              "method_params": {"full": {"lr": 1e-2}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    # the command in this process (typer's runner), not a subprocess that imports torch again for seconds
    from typer.testing import CliRunner

    from ftlab.cli import app

    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(app, ["train", "--method", "full", "--params", "params.yaml", "--out", "run"])
    assert out.exit_code == 0, f"{out.output[-4000:]}{out.exception!r}"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history[0]["validation_exact_match"] == 0.0 and history[0]["validation_perplexity"] > 15
    assert metrics["exact_match"] >= 0.15 and metrics["token_f1"] > 0.6 and metrics["perplexity"] < 4
    assert metrics["best_validation"]["metric"] == "token_accuracy"
    predictions = pd.read_parquet(tmp_path / "run" / "predictions.parquet")
    assert len(predictions) == metrics["n_test"] == 60


# ---- 5. scoring and checks ---------------------------------------------------------------------

def test_answers_are_scored_after_normalisation_and_by_their_final_number_or_label():
    from ftlab.learning.answers import answer_correct, exact_match, label_set, token_f1

    assert exact_match("The answer is 42.", "answer is  42") and not exact_match("42", "43")
    assert token_f1("the b c e", "c d") == pytest.approx(2 * 1 / (3 + 2))  # "the" is dropped and token_f1("", "") == 1.0
    assert answer_correct("so we get 1,000 apples", "#### 1000.0", "final_number", [])
    assert not answer_correct("no number here", "12", "final_number", [])
    labels = label_set(["It is positive.", "so: Negative"])
    assert labels == ["negative", "positive"]
    assert answer_correct("Hmm, negative or positive? positive!", "clearly positive", "label", labels)


def test_the_overfitting_check_judges_the_loss_gap():
    from ftlab.analysis.checks import overfitting
    from ftlab.core.config import ChecksConfig

    task = TASKS["causal_lm"]()
    history = [{"step": 10, "train_loss": 0.50, "validation_loss": 0.80, "train_exact_match": 0.9,
                "validation_exact_match": 0.9}]
    result = overfitting(history, 10, ChecksConfig(warn_gap=0.1, overfit_gap=0.25), task.gap_metric)
    assert task.gap_metric.name == "loss" and result["gap_at_best"] == pytest.approx(0.30)
    assert result["verdict"] == "overfit" and "train loss 0.500 vs validation 0.800" in result["reasons"][0]


def test_encoder_dropout_reaches_a_decoders_residual_embedding_and_attention_dropout(tmp_path, gpt2):
    cfg = config(tmp_path, gpt2, model__encoder_dropout=0.0)
    model = cfg.task_type().build_model(cfg.model, [])
    p = {name: m.p for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    assert any(name.endswith("attn_dropout") for name in p) and set(p.values()) == {0.0}
    cfg = config(tmp_path, gpt2)  # null: the checkpoint's own
    default = cfg.task_type().build_model(cfg.model, [])
    assert {m.p for m in default.modules() if isinstance(m, torch.nn.Dropout)} == {0.1}
