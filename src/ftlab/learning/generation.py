"""What a decoder language model outputs for the causal_lm task: teacher-forced token statistics
and greedy answers generated from left-padded batches.

Training batches are padded on the right (the collator's); generation pads on the left, so
every prompt ends where its answer begins and the batch's new tokens start in one column.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import torch
from torch import nn


def teacher_forced(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(batch, length, 2): at each label position the argmax token predicted for it from the tokens
    before it, and the label's negative log-likelihood (0 at position 0, never a response token).
    Virtual tokens that peft's prompt methods prepend are dropped first."""
    logits = logits[:, -labels.shape[1] :].float()
    nll = nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:].clamp(min=0), reduction="none")
    out = torch.zeros((*labels.shape, 2), device=logits.device)
    out[:, 1:, 0] = logits[:, :-1].argmax(-1).float()
    out[:, 1:, 1] = nll
    return out


def row_stats(predicted: np.ndarray, nll: np.ndarray, labels: np.ndarray) -> dict:
    """One row's teacher-forced counts: response tokens (labels not -100), correct argmax tokens,
    summed NLL, and the bag-of-tokens F1 of the argmax tokens against the response's."""
    keep = labels != -100
    gold, pred = labels[keep].astype(int), predicted[keep].astype(int)
    common = sum((Counter(gold.tolist()) & Counter(pred.tolist())).values())
    return {"response_tokens": int(keep.sum()), "correct_tokens": int((gold == pred).sum()),
            "nll": float(nll[keep].sum()), "argmax_f1": 2 * common / (len(gold) + len(pred)) if len(gold) else 0.0}


def stop_ids(model: nn.Module, tokenizer: Any) -> list[int]:
    """Every token that ends an answer: the tokenizer's EOS and the model's generation EOS tokens."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    configured = configured if isinstance(configured, list) else [configured]
    return sorted({tokenizer.eos_token_id, *(i for i in configured if i is not None)})


def cached_generation_is_wrong(model: nn.Module) -> bool:
    """Whether ``model`` is a peft prompt-learning model, whose cached ``generate()`` (peft 0.21,
    transformers 5.24) is not its argmax continuation: prompt tuning and p-tuning prepend the
    virtual tokens again at every decoding step (21 tokens per step for 20 virtual tokens; GPT-2
    fails with an index error once the positions pass ``n_positions``), and prefix tuning's answers
    drift from the second token on. Without the cache all three agree with a forward pass per token."""
    config = getattr(model, "active_peft_config", None)
    return config is not None and config.is_prompt_learning


def greedy_without_cache(model: nn.Module, prompt: list[int], max_new_tokens: int, stops: list[int],
                         bf16: bool = False) -> list[int]:
    """Greedy decoding of one prompt by a full forward pass per new token: quadratic in the answer's
    length, but exactly the model's argmax continuation (no cache, no padding)."""
    device = next(model.parameters()).device
    ids, answer = list(prompt), []
    for _ in range(max_new_tokens):
        x = torch.tensor([ids], device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            token = int(model(input_ids=x, attention_mask=torch.ones_like(x)).logits[0, -1].argmax())
        if token in stops:
            break
        answer.append(token)
        ids.append(token)
    return answer


@torch.inference_mode()
def generate(model: nn.Module, tokenizer: Any, prompts: list[list[int]], max_new_tokens: int, bf16: bool = False) -> list[list[int]]:
    """Greedy answers (token ids up to, not including, the first stop token) to one left-padded batch
    (one prompt at a time without a cache for peft's prompt methods: see cached_generation_is_wrong)."""
    device = next(model.parameters()).device
    width, pad, stops = max(map(len, prompts)), tokenizer.pad_token_id, stop_ids(model, tokenizer)
    if cached_generation_is_wrong(model):
        return [greedy_without_cache(model, p, max_new_tokens, stops, bf16) for p in prompts]
    input_ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        # a PreTrainedModel or a PeftModel, both with generate()
        out = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                             num_beams=1, pad_token_id=pad, eos_token_id=stops, top_p=None, top_k=None, temperature=None)
    answers = []
    for row in out[:, width:].tolist():
        end = next((i for i, t in enumerate(row) if t in stops), len(row))
        answers.append(row[:end])
    return answers


@torch.inference_mode()
def generate_and_score(model: nn.Module, tokenizer: Any, dataset: Any, collator: Any, batch_size: int, bf16: bool,
                       max_new_tokens: int) -> list[dict]:
    """Per row of a tokenised causal_lm dataset, in its order: the greedy answer (``prediction``)
    and its teacher-forced counts (see :func:`row_stats`)."""
    model.eval()
    device = next(model.parameters()).device
    order = np.argsort([len(ids) for ids in dataset["input_ids"]], kind="stable")
    out: list[dict] = [{}] * len(order)
    for start in range(0, len(order), batch_size):
        index = [int(i) for i in order[start : start + batch_size]]
        rows = [dataset[i] for i in index]
        batch = {k: v.to(device) for k, v in collator([{k: r[k] for k in ("input_ids", "labels")} for r in rows]).items()}
        labels = batch.pop("labels")
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            stats = teacher_forced(model(**batch).logits, labels).cpu().numpy()
        answers = generate(model, tokenizer, [r["input_ids"][: r["prompt_length"]] for r in rows], max_new_tokens, bf16)
        for i, s, y, answer in zip(index, stats, labels.cpu().numpy(), answers, strict=True):
            text = tokenizer.decode(answer, skip_special_tokens=True).strip()
            out[i] = {"prediction": text, **row_stats(s[:, 0], s[:, 1], y)}
    return out
