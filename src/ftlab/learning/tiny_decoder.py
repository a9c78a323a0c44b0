"""A tiny randomly initialised decoder LM saved like a hub model: the offline stand-in for a real one.

No pretrained decoder ships with ftlab, so the causal_lm task is tested, and can be tried without
a network, on a 2-layer, 32-wide LLaMA-style (untied lm_head, BOS, its own pad token) or GPT-2
(tied lm_head, no BOS, no pad token) model with a word-level tokenizer over the words of the
built-in synthetic datasets (``builtin:copy``/``reverse``/``sort``), with or without a chat template.
Its quality says nothing about real LLMs; its costs and mechanics are those of any decoder.

    python -m ftlab.learning.tiny_decoder OUT_DIR [llama|gpt2]
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from ftlab.learning.tasks.synthetic import SYNTHETIC_WORDS

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
WORDS = (*SYNTHETIC_WORDS, "<user>", "<assistant>", "<system>", "system:", "be", "brief")
# renders [{"role": "user", "content": "copy: a"}] as "<user> copy: a <assistant>"
CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} {% endfor %}"
                 "{% if add_generation_prompt %}<assistant> {% endif %}")


def build_tokenizer(out: Path, bos: bool, chat: bool) -> None:
    """A word-level tokenizer over :data:`WORDS` (a BOS and a pad token when ``bos``)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate([*SPECIALS, *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>" if bos else None)
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(out))


def build(out: Path, arch: str = "llama", chat: bool = False, seed: int = 0) -> str:
    """Save a random ``arch`` ("llama" or "gpt2") decoder and its tokenizer to ``out``; the path."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedModel, set_seed

    set_seed(seed)
    vocab = len(SPECIALS) + len(WORDS)
    model: PreTrainedModel
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, bos_token_id=1, eos_token_id=2, pad_token_id=0,
            tie_word_embeddings=False))
    elif arch == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=256,
                                           bos_token_id=2, eos_token_id=2))
    else:
        raise ValueError(f"unknown architecture {arch!r}: llama or gpt2")
    model.save_pretrained(str(out))
    build_tokenizer(Path(out), bos=arch == "llama", chat=chat)
    return str(out)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger(__name__).info("saved %s", build(Path(sys.argv[1]), (sys.argv[2:] or ["llama"])[0]))
