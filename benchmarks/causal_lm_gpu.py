"""Training throughput and peak GPU memory of every method that trains a causal LM, on a ~0.9B decoder.

    python benchmarks/causal_lm_gpu.py [--seconds 20] [--methods full lora ...]   -> results/causal_lm_gpu.json
    python benchmarks/causal_lm_gpu.py --tiny     # a 2-layer, 32-wide model for a few steps: checks the script on CPU

No pretrained decoder is reachable offline, so the model is a randomly initialised LLaMA-style one
(16 layers, 2048 wide, grouped-query attention, 32k vocabulary, untied lm_head: ~0.9B parameters)
and the data random tokens: throughput and memory depend on the shapes, not on the weights. Each
method gets a fresh model and trains as ftlab's Trainer would on a GPU: fp32 weights under bf16
autocast, TF32 matmuls, fused AdamW over the method's parameter groups, gradients clipped at 1.0,
loss only on the second half of each sequence (the "response"), batch 8 of 1,024 tokens. After
warm-up steps it trains for ``--seconds`` (at least ``--min-steps`` steps); tokens/s counts every
input token, and the peak is ``torch.cuda.max_memory_allocated`` from the model's creation to the
last step (weights, optimizer state, activations). The methods run one after another in one
process, so compare them within one run. On CPU (``--tiny``) there is no allocated-memory figure.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).parent / "results"
WORK = Path(__file__).parent / ".work"
SHAPES = {  # LlamaConfig fields, batch size and sequence length
    "gpu": (
        {
            "vocab_size": 32000,
            "hidden_size": 2048,
            "intermediate_size": 5632,
            "num_hidden_layers": 16,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
        },
        8,
        1024,
    ),
    "tiny": (
        {
            "vocab_size": 64,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
        },
        4,
        32,
    ),
}


def causal_lm_methods() -> list[str]:
    """Every registered method the causal_lm task accepts (as `ftlab methods` lists them)."""
    from ftlab.learning.methods import METHODS
    from ftlab.learning.tasks import TASKS

    return [m for m in METHODS if m not in TASKS["causal_lm"].unsupported_methods]


def build(method: str, fields: dict, device: torch.device) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """A fresh random decoder prepared by ``method`` at its default hyperparameters, and its optimizer."""
    from transformers import LlamaConfig, LlamaForCausalLM, set_seed

    from ftlab.learning.config import load_config
    from ftlab.learning.methods import get_method

    # a random prompt: the text initialisation needs a tokenizer, which a random model lacks
    cfg = load_config(None, {"task.type": "causal_lm", "method_params.prompt_tuning.init": "random"})
    params = cfg.params_for(method)
    set_seed(0)
    config = LlamaConfig(**fields, max_position_embeddings=4096, tie_word_embeddings=False)
    with device:  # weights created where they train: initialising 0.9B parameters on the CPU takes long
        model = get_method(method).prepare(LlamaForCausalLM(config), params, "CAUSAL_LM")
    model.to(device).train()
    groups = get_method(method).param_groups(model, params, cfg.train.weight_decay)
    return model, torch.optim.AdamW(groups, lr=params.lr, fused=True)


def random_batch(vocab: int, batch: int, length: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Random tokens; the first half of each row is the prompt (-100: no loss), the rest the response."""
    ids = torch.randint(3, vocab, (batch, length), device=device)
    labels = ids.clone()
    labels[:, : length // 2] = -100
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, inputs: dict, cuda: bool) -> float:
    """One optimizer step as the Trainer takes it; the loss (which waits for the step to finish)."""
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
        loss = model(**inputs).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def measure(method: str, shape: str, seconds: float, min_steps: int, warmup: int) -> dict[str, Any]:
    """Tokens/s and peak allocated memory of ``method``'s training steps."""
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    fields, batch, length = SHAPES[shape]
    gc.collect()  # the previous method's model, also when it ran out of memory
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model, optimizer = build(method, fields, device)
    inputs = random_batch(fields["vocab_size"], batch, length, device)
    losses = [step(model, optimizer, inputs, cuda) for _ in range(warmup)]  # kernels chosen, state allocated
    steps, start = 0, time.perf_counter()
    while steps < min_steps or time.perf_counter() - start < seconds:
        losses.append(step(model, optimizer, inputs, cuda))
        steps += 1
    elapsed = time.perf_counter() - start
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {
        "tokens_per_second": round(steps * batch * length / elapsed, 1),
        "step_ms": round(1000 * elapsed / steps, 2),
        "timed_steps": steps,
        "peak_allocated_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
        "trainable_params": trainable,
        "total_params": total,
        "first_loss": round(losses[0], 4),
        "last_loss": round(losses[-1], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="the tiny model for a few steps (checks the script on CPU)")
    parser.add_argument("--seconds", type=float, default=20.0, help="timed training per method (default 20)")
    parser.add_argument(
        "--methods", nargs="*", choices=causal_lm_methods(), help="default: every one causal_lm accepts"
    )
    parser.add_argument(
        "--out", type=Path, help="default: results/causal_lm_gpu.json (--tiny: .work/causal_lm_gpu_tiny.json)"
    )
    args = parser.parse_args()
    shape = "tiny" if args.tiny else "gpu"
    seconds, min_steps, warmup = (0.0, 3, 1) if args.tiny else (args.seconds, 10, 3)
    rows: dict[str, Any] = {}
    for method in args.methods or causal_lm_methods():
        try:
            rows[method] = measure(method, shape, seconds, min_steps, warmup)
        except torch.OutOfMemoryError as e:
            rows[method] = {"error": f"out of memory: {str(e).splitlines()[0]}"}
        print(method, json.dumps(rows[method]), flush=True)
    fields, batch, length = SHAPES[shape]
    import peft
    import transformers

    result = {
        "model": {"kind": "random LlamaForCausalLM", **fields, "batch_size": batch, "sequence_length": length},
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "precision": "bf16 autocast, fp32 weights" if torch.cuda.is_available() else "fp32",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
        "methods": rows,
    }
    out = args.out or (WORK / "causal_lm_gpu_tiny.json" if args.tiny else RESULTS / "causal_lm_gpu.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
