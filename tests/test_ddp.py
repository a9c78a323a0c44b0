"""One model on two processes: `ftlab train` under torchrun (DDP, gloo on CPU) against one process.

Both runs go through tests/ddp_probe.py, which runs the real CLI and records the batches each
process trained on and its final weights: the one-process run in the test process, the two ranks
under torchrun. Two cells: a tiny BERT classifier and a tiny LLaMA-style decoder instruction-tuned
as a causal LM. Dropout is off (model and head) so the two runs may differ only by floating-point
summation order: DDP averages the gradients of two half batches where one process averages one
whole batch. For the causal LM that average must be over the response tokens of the whole batch,
which two halves rarely split evenly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import chdir
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from ftlab.data.prepare import load_prepared
from ftlab.learning.config import load_config
from ftlab.learning.modeling import load_tokenizer
from ftlab.learning.tiny_decoder import build as build_decoder
from ftlab.stages import prepare
from ftlab.training.train import subsample
from tests.ddp_probe import record

pytestmark = pytest.mark.pipeline

PROBE = Path(__file__).with_name("ddp_probe.py")
BATCH, SIZE, STEPS, SEED = 16, 128, 12, 42  # 8 steps an epoch: one whole epoch, then half of the next


def bert_cell(root: Path, request: pytest.FixtureRequest) -> dict:
    """Classification of the toy reviews by the tiny BERT, its dropout off: masks differ between one
    process and two."""
    return {"data": {"source": str(request.getfixturevalue("toy_csv"))},
            "model": {"name": request.getfixturevalue("tiny_model"), "dropout": 0.0, "encoder_dropout": 0.0,
                      "max_length": 64}}


def llama_cell(root: Path, request: pytest.FixtureRequest) -> dict:
    """Instruction tuning of the tiny random LLaMA-style decoder (no dropout) on builtin:reverse,
    whose answers of 2 to 5 words give the two half batches unequal numbers of response tokens."""
    return {"task": {"type": "causal_lm", "max_new_tokens": 6},
            "data": {"source": "builtin:reverse", "demo": {"n_samples": 240}},
            "model": {"name": build_decoder(root / "model", "llama"), "max_length": 32}}


CELLS = {"classification": bert_cell, "causal_lm": llama_cell}


@pytest.fixture(scope="module", params=list(CELLS))
def runs(request, tmp_path_factory) -> dict:
    """The same cell trained by one process and by two (torchrun), with what each process saw."""
    root = tmp_path_factory.mktemp(f"ddp-{request.param}")
    cell = CELLS[request.param](root, request)
    params = {
        "seed": SEED,
        "methods": ["full"],
        "task": cell.get("task", {"type": "classification"}),
        "data": {**cell["data"], "prepared_dir": str(root / "data")},
        "model": cell["model"],
        # fp32: in bf16 the two half-batch matmuls round differently from the whole batch's, far
        # beyond the summation-order differences this test bounds
        "train": {"batch_size": BATCH, "max_steps": STEPS, "eval_steps": 4, "logging_steps": 1, "threads": 1,
                  "train_eval_samples": 32, "checkpoint_dir": str(root / "checkpoints"), "precision": "fp32"},
        "method_params": {"full": {"lr": 1.0e-3}},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    cfg = load_config(root / "params.yaml")
    prepare(cfg)

    def args(name: str) -> list[str]:
        return ["train", "--method", "full", "--train-size", str(SIZE), "--params", str(root / "params.yaml"),
                "--out", str(root / "runs" / name / "run")]

    # one process: this one (a process of its own paid seconds of imports; train.threads is 1 either way)
    with chdir(root):
        assert record(root / "record" / "single", args("single")) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(PROBE),
           str(root / "record" / "ddp"), *args("ddp")]
    done = subprocess.run(cmd, check=False, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"ddp:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    splits, labels = load_prepared(cfg)
    train = subsample(splits["train"], SIZE, SEED)
    ids = cfg.task_type().tokenize(train, load_tokenizer(cfg.model), cfg.model.max_length, labels)["input_ids"]
    return {"root": root, "task": request.param, "row": {tuple(seq): i for i, seq in enumerate(ids)}}


def seen(runs: dict, name: str, rank: int) -> list[list[int]]:
    """The training-set rows of each batch that process trained on, in order."""
    batches = json.loads((runs["root"] / "record" / name / f"rank{rank}.json").read_text())
    return [[runs["row"][tuple(seq)] for seq in batch] for batch in batches]


def train_losses(run: Path) -> list[float]:
    """The logged training loss of every step, from the run's TensorBoard logs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard")).Reload()
    return [e.value for e in events.Scalars("train/loss")]


def test_ranks_train_on_disjoint_shards_that_cover_the_data(runs):
    single = seen(runs, "single", 0)
    ranks = [seen(runs, "ddp", r) for r in (0, 1)]
    assert len(single) == STEPS and [len(r) for r in ranks] == [STEPS, STEPS]
    for step in range(STEPS):
        halves = [set(r[step]) for r in ranks]
        assert [len(h) for h in halves] == [BATCH // 2, BATCH // 2]
        assert not halves[0] & halves[1], f"step {step}: both ranks trained on {halves[0] & halves[1]}"
        # the length-grouped order is sharded, not redrawn: each step is the single process's batch
        assert halves[0] | halves[1] == set(single[step]), f"step {step}"
    epoch = SIZE // BATCH
    first_epoch = [row for r in ranks for batch in r[:epoch] for row in batch]
    assert sorted(first_epoch) == list(range(SIZE))  # every example once


def test_ranks_end_with_identical_weights_close_to_one_process(runs):
    rank0, rank1 = (load_file(str(runs["root"] / "record" / "ddp" / f"rank{r}.safetensors")) for r in (0, 1))
    single = load_file(str(runs["root"] / "record" / "single" / "rank0.safetensors"))
    assert rank0.keys() == rank1.keys() == single.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
        torch.testing.assert_close(rank0[name], single[name], rtol=1e-4, atol=1e-5, msg=name)
    # and rank 0 saved those weights
    saved = load_file(str(runs["root"] / "runs" / "ddp" / "run" / "model" / "model.safetensors"))
    assert all(torch.equal(saved[k], rank0[k]) for k in saved.keys() & rank0.keys()) and saved


def test_loss_matches_one_process(runs):
    single = train_losses(runs["root"] / "runs" / "single" / "run")
    ddp = train_losses(runs["root"] / "runs" / "ddp" / "run")
    assert len(single) == len(ddp) == STEPS
    # the traps: with the Trainer's average_tokens_across_devices on, the classifier's ratio is 2;
    # with it off, the causal LM's is off by 0.1% (each rank's token mean weighs its tokens)
    assert ddp == pytest.approx(single, rel=1e-4), (single, ddp)
    history = {n: json.loads((runs["root"] / "runs" / n / "run" / "history.json").read_text()) for n in ("single", "ddp")}
    assert [h["step"] for h in history["ddp"]] == [h["step"] for h in history["single"]] == [0, 4, 8, 12]
    for a, b in zip(history["single"], history["ddp"], strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)  # 32 rows: 16 a rank
        assert b["validation_primary"] == a["validation_primary"]
        # 24 rows do not fill two eval batches: accelerate pads each rank's batch with repeated rows,
        # and the Trainer's eval loss is the mean of batch means (predictions are de-duplicated). A
        # causal LM's rank-0 batch loss is divided by both ranks' token counts, rank 1's from
        # padding it then drops (0.7% off here; the 32 train rows pad both ranks alike)
        rel = {"classification": 5e-3, "causal_lm": 1e-2}[runs["task"]]
        assert b["validation_loss"] == pytest.approx(a["validation_loss"], rel=rel)
    metrics = {n: json.loads((runs["root"] / "runs" / n / "run" / "metrics.json").read_text()) for n in ("single", "ddp")}
    primary = {"classification": "accuracy", "causal_lm": "exact_match"}[runs["task"]]
    assert metrics["ddp"]["primary_metric"] == metrics["single"]["primary_metric"] == primary
    assert metrics["ddp"][primary] == metrics["single"][primary]
    assert metrics["ddp"]["cost"]["processes"] == 2 and metrics["single"]["cost"]["processes"] == 1


def test_only_rank_zero_writes(runs):
    out = runs["root"] / "runs" / "ddp"
    assert [p.name for p in out.iterdir()] == ["run"]  # no temporary directory of another rank left
    assert {"metrics.json", "predictions.parquet", "model", "tensorboard"} <= {p.name for p in (out / "run").iterdir()}
    assert len(list((out / "run" / "tensorboard").rglob("events.out.tfevents.*"))) == 1
    assert not any((runs["root"] / "checkpoints").iterdir())  # the finished run's checkpoints are removed
