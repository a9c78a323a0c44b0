"""``ftlab predict`` for causal LMs (issue 34): a tiny random LLaMA-style decoder built here (no
pretrained decoder is available offline, see tests/test_causal_lm.py), instruction-tuned briefly on
the built-in copy task (full fine-tuning, or LoRA merged into the export) and promoted. Each prompt's
greedy answer comes back in input order, across chunks: the run's own test answer, and the text
transformers' ``generate`` gives on the promoted model/ with the prompt template the run trained with."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch

from ftlab import stages
from ftlab.core import layout
from ftlab.learning.config import load_config
from ftlab.learning.tasks import DataError
from ftlab.learning.tiny_decoder import build
from ftlab.serving.predict import predict_file
from ftlab.serving.promote import model_dir

LR = {"full": 1e-2, "lora": 5e-2}  # LoRA at 1e-2 left most answers empty after 60 steps


def promoted(root, decoder: str, method: str) -> tuple:
    """builtin:copy (120 prompts), ``method`` for 60 steps: answers that differ by prompt (none right
    yet: test_pipeline_causal_lm trains one that copies)."""
    values = {"task": {"type": "causal_lm", "max_new_tokens": 8},
              "data": {"source": "builtin:copy", "demo": {"n_samples": 120}, "prepared_dir": str(root / "data")},
              "model.name": decoder, "model.max_length": 32, "methods": [method], f"method_params.{method}.lr": LR[method],
              "train.batch_size": 16, "train.eval_batch_size": 32, "train.eval_steps": 30, "train.max_steps": 60,
              "train.train_eval_samples": 16, "train.threads": 1, "train.precision": "fp32",
              "train.checkpoint_dir": None, "train.early_stopping_patience": 0, "train.output_dir": str(root / "runs"),
              "report.dir": str(root / "reports"), "promote.dir": str(root / "models")}
    cfg = load_config(None, values)
    stages.prepare(cfg)
    stages.train(cfg, method)
    stages.compare(cfg)
    meta = stages.promote(cfg)
    assert (meta["layout"], meta["task_type"], meta["text_column"]) == ("ftlab", "causal_lm", "prompt")
    # whole weights (LoRA merged): the card shows transformers' own loading, as transformers_answers does
    assert meta["model_class"] == "AutoModelForCausalLM" and (model_dir(cfg) / "model" / "model.safetensors").is_file()
    assert "AutoModelForCausalLM.from_pretrained" in (model_dir(cfg) / "README.md").read_text()
    return cfg, pd.read_parquet(layout.run_dir(cfg, stages.cell(cfg, method)) / "predictions.parquet")


@torch.inference_mode()
def transformers_answers(path, prompts: list[str], max_new_tokens: int) -> list[str]:
    """transformers alone on the promoted model/, one prompt at a time, greedy, up to EOS: the prompt
    as a user message in the template the run trained with, the tokenizer's chat template where it has
    one (it writes BOS itself), else the plain one (``ftlab.learning.tasks.causal_lm.plain_prompt``)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(path / "model")).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path / "tokenizer"))
    out = []
    for prompt in prompts:
        if tokenizer.chat_template:
            text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                 add_generation_prompt=True)
            ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
        else:
            ids = tokenizer(f"user: {prompt}\nassistant:", return_tensors="pt")
        new = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id)[0, ids["input_ids"].shape[1]:]
        out.append(tokenizer.decode(new, skip_special_tokens=True).strip())
    return out


@pytest.mark.parametrize(("method", "chat"), [("full", False), ("full", True), ("lora", False)],
                         ids=["plain-template", "chat-template", "lora-merged"])
def test_predict_gives_each_prompts_greedy_answer_as_the_run_and_transformers_do(tmp_path, method, chat):
    """Copy prompts of the test split in reverse order, 5 a chunk: each row kept, its answer the run's
    own test answer and transformers' generate on model/ (identical text); the CLI's --max-new-tokens
    cuts the answers where generate does; a prompt longer than the run's max_length is refused by row
    (in the first chunk, before the model loads)."""
    decoder = build(tmp_path / "tiny-llama", "llama", chat=chat)
    cfg, expected = promoted(tmp_path, decoder, method)
    rows = expected.iloc[::-1].reset_index(drop=True)
    new = pd.DataFrame({"id": range(len(rows)), "prompt": rows["text"]})
    new.to_json(tmp_path / "new.jsonl", orient="records", lines=True)
    done = predict_file(model_dir(cfg), tmp_path / "new.jsonl", tmp_path / "out.csv", chunk_rows=5, precision="fp32")
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert done["rows"] == len(rows) >= 12 and list(out.columns) == ["id", "prompt", "prediction"]
    assert list(out["prompt"]) == list(new["prompt"])
    answers = list(out["prediction"])
    assert answers == list(rows["prediction"])  # the run's own test answers
    assert len(set(answers)) > 5  # answers that differ by prompt (9 to 20 kinds): a row out of place would show
    assert answers == transformers_answers(model_dir(cfg), list(new["prompt"]), 8)

    from typer.testing import CliRunner

    from ftlab.cli import app

    done = CliRunner().invoke(app, ["predict", "--model", str(model_dir(cfg)), "--input", str(tmp_path / "new.jsonl"),
                                    "--output", str(tmp_path / "short.jsonl"), "--max-new-tokens", "2", "--precision", "fp32"])
    assert done.exit_code == 0, done.output
    short = [json.loads(line)["prediction"] for line in (tmp_path / "short.jsonl").read_text().splitlines()]
    assert short == transformers_answers(model_dir(cfg), list(new["prompt"]), 2) and short != answers
    assert all(len(a.split()) <= 2 for a in short)

    new.loc[7, "prompt"] = "copy: " + " ".join(["a"] * 40)
    new.to_json(tmp_path / "new.jsonl", orient="records", lines=True)
    before = (tmp_path / "out.csv").read_bytes()
    with pytest.raises(DataError, match=r"1 prompt\(s\) of 32 tokens or more .*rows \[7\]"):
        predict_file(model_dir(cfg), tmp_path / "new.jsonl", tmp_path / "out.csv", chunk_rows=5, precision="fp32")
    assert (tmp_path / "out.csv").read_bytes() == before
    # in the first chunk, before the model loads: a copy without its weights fails on the prompt alone
    shutil.copytree(model_dir(cfg), tmp_path / "no-weights", ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(DataError, match=r"rows \[7\]"):
        predict_file(tmp_path / "no-weights", tmp_path / "new.jsonl", tmp_path / "out.csv", chunk_rows=10, precision="fp32")
