"""``causal_lm``: instruction tuning of a decoder language model; test answers are generated and scored.

Data: prompt/response pairs (``task.prompt_column``, ``task.response_column``) or chat ``messages``
lists (``task.messages_column``: the last message is the assistant's response, the ones before it
the prompt). The prompt is rendered with the tokenizer's chat template when it has one
(``task.chat_template: auto``), else with the plain template: one ``<role>: <content>`` line per
message, then ``assistant:``. Prompt and response are tokenised apart and concatenated, the
response followed by EOS, so the loss mask (-100 on every prompt token) covers exactly the
response and its EOS, and generation starts from exactly the prompt the model was trained on.

Metrics: during training, under teacher forcing, on the response tokens: exact match (every token
and the EOS is the model's argmax, which is exactly when greedy decoding reproduces the reference
token for token), token F1 of those argmax tokens, token accuracy and perplexity. At test, greedy
generation (``max_new_tokens``) scored by exact match after normalisation (lower case, no
punctuation or articles, single spaces: the primary metric) and SQuAD's token F1, plus, with
``task.answer``, the final number or label of each answer. Early stopping follows token accuracy
(whole-answer exact match stays 0 for long stretches of training); the overfitting check judges
the train − validation loss gap.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from ftlab.learning.answers import answer_correct, exact_match, label_set, token_f1
from ftlab.learning.tasks.base import DataError, Metric, Task, TaskOptions, register, where
from ftlab.learning.tasks.statistics import MeanStatistic
from ftlab.learning.tasks.synthetic import synthetic

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ftlab.core.config import ModelConfig

log = logging.getLogger(__name__)
class CausalLMOptions(TaskOptions):
    prompt_column: str = Field("prompt", description="the column that holds the instruction")
    response_column: str = Field("response", description="the column that holds the reference response")
    messages_column: str | None = Field(None, description="chat lists instead of prompt/response: [{role, content}, ...]")
    chat_template: Literal["auto", "required", "plain"] = Field("auto", description=(
        "auto: the tokenizer's chat template if it has one, else the plain template; required: the tokenizer's "
        "(an error if it has none); plain: always the plain template"))
    max_new_tokens: int = Field(64, ge=1, description="generation limit at test")
    answer: Literal["none", "final_number", "label"] = Field("none", description="also score the answer's final number, or its last word that is a label of the train responses")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass: less memory, ~30% slower")

    @model_validator(mode="before")
    @classmethod
    def _own_columns(cls, data: Any) -> Any:
        # the defaults come back in a run's resolved config.yaml; any other value is a mistake
        defaults = {"text_column": "text", "label_column": "label"}
        given = [k for k, v in defaults.items() if isinstance(data, dict) and data.get(k, v) != v]
        if given:
            raise ValueError(f"causal_lm reads task.prompt_column and task.response_column (or task.messages_column), "
                             f"not task.{given[0]}")
        return data


def plain_prompt(messages: list[dict]) -> str:
    """The plain template: one ``<role>: <content>`` line per message, then ``assistant:``."""
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"


def _conversation(value: Any, split: str, at: str) -> tuple[list[dict], str]:
    """(prompt messages, response) of one chat list; a JSON string (CSV/TSV) is parsed first. ``at``:
    where the row is (its file and line, or ``row N``)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise DataError(f"{split}: {at}: messages is not a JSON list ({e})") from None
    if not isinstance(value, (list, tuple, np.ndarray)) or len(value) < 2:
        raise DataError(f"{split}: {at}: messages must be a list of at least a prompt and a response message")
    messages = []
    for m in value:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise DataError(f"{split}: {at}: each message needs string 'role' and 'content', got {str(m)[:60]!r}")
        messages.append({"role": m["role"], "content": m["content"]})
    if messages[-1]["role"] != "assistant" or not messages[-1]["content"].strip():
        raise DataError(f"{split}: {at}: the last message must be a non-empty assistant response (the target)")
    return messages[:-1], messages[-1]["content"]


@register
class CausalLM(Task):
    name = "causal_lm"
    summary = "instruction tuning of a decoder LM (prompt/response or chat messages): greedy answers, exact match"
    Options = CausalLMOptions
    peft_task_type = "CAUSAL_LM"
    metrics = (Metric("exact_match", "exact match"), Metric("token_f1", "token F1"),
               Metric("token_accuracy", "response token accuracy"),
               Metric("perplexity", "perplexity", higher_is_better=False))
    statistic = MeanStatistic("exact_match", "exact match")

    unsupported_methods: ClassVar[dict[str, str]] = {"probe": "a causal LM has no new head: its output layer is pretrained, so training "
                                    "it alone is no linear probe"}
    builtin_sources = ("copy", "reverse", "sort")
    loss_over_batch_tokens = True

    def validation_targets(self, label: pd.Series) -> tuple[dict[str, Any], pd.Series | None]:
        return {"response": label}, None  # the target is the response text

    @property
    def selection_metric(self) -> Metric:
        return self.metric("token_accuracy")

    @property
    def gap_metric(self) -> Metric:
        return self.metric("loss")

    # ---- data -------------------------------------------------------------------------------
    def source_columns(self) -> dict[str, str]:
        if self.opts.messages_column:
            return {"messages": self.opts.messages_column}
        return {"prompt": self.opts.prompt_column, "response": self.opts.response_column}

    @property
    def target(self) -> str | None:
        """The response; a chat's is its last message, always there."""
        return None if self.opts.messages_column else "response"

    def builtin(self, name: str, n: int, seed: int) -> pd.DataFrame:
        return synthetic(name, n, seed)

    def check_rows(self, df: pd.DataFrame, split: str) -> None:
        if "messages" in df:
            origins = df["origin"] if "origin" in df else pd.Series(None, index=df.index, dtype=object)
            for row, value, origin in zip(df.index, df["messages"], origins, strict=True):
                _conversation(value, split, origin if isinstance(origin, str) else f"row {row}")
            return
        for column in ("prompt", "response"):
            blank = df[column].isna() | (df[column].astype(str).str.strip() == "")
            if blank.any():
                raise DataError(f"{split}: {int(blank.sum())} null or empty {column}(s) (task.{column}_column="
                                f"{getattr(self.opts, f'{column}_column')!r}), e.g. {where(df, blank)}")

    def encode(self, splits: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], list[str]]:
        """Canonical columns: ``text`` (the prompt, plain-rendered for chats), ``label`` (the response)
        and, for chats, ``messages`` (the prompt messages as JSON). Label names: the answer labels."""
        out = {}
        for split, df in splits.items():
            if "messages" in df:
                chats = [_conversation(v, split, f"row {row}") for row, v in zip(df.index, df["messages"], strict=True)]
                out[split] = pd.DataFrame({"text": [plain_prompt(m) for m, _ in chats], "label": [r for _, r in chats],
                                           "messages": [json.dumps(m) for m, _ in chats]})
            else:
                out[split] = pd.DataFrame({"text": df["prompt"].astype(str).to_numpy(),
                                           "label": df["response"].astype(str).to_numpy()})
        labels = label_set(out["train"]["label"]) if self.opts.answer == "label" else []
        return out, labels

    # ---- model ------------------------------------------------------------------------------
    def _prompt(self, row: pd.Series, tokenizer: Any, chat: bool) -> list[int]:
        messages = json.loads(row["messages"]) if "messages" in row else [{"role": "user", "content": row["text"]}]
        if chat:
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return tokenizer(text, add_special_tokens=False)["input_ids"]  # the template writes BOS itself
        return tokenizer(plain_prompt(messages))["input_ids"]

    def prompt_ids(self, prompts: list[str], tokenizer: Any) -> list[list[int]]:
        """Each prompt's token ids as training rendered a prompt column's row (a user message, in the
        template :meth:`uses_chat_template` picks): where a served model's answer starts."""
        chat = self.uses_chat_template(tokenizer)
        return [self._prompt(pd.Series({"text": p}), tokenizer, chat) for p in prompts]

    def uses_chat_template(self, tokenizer: Any) -> bool:
        """Whether prompts are rendered with the tokenizer's chat template (see task.chat_template)."""
        has = bool(getattr(tokenizer, "chat_template", None))
        if self.opts.chat_template == "required" and not has:
            raise ValueError("task.chat_template: required, but the model's tokenizer has no chat template; "
                             "set task.chat_template: auto or plain to use the plain template")
        return has and self.opts.chat_template != "plain"

    def tokenize(self, df: pd.DataFrame, tokenizer: Any, max_length: int, labels: list[str]) -> Any:
        """``input_ids`` = prompt + response + EOS, ``labels`` = -100 on the prompt, and
        ``prompt_length`` (where generation starts). A sequence over ``max_length`` loses the end of
        its response (reported); a prompt that leaves no room for a response is an error."""
        from datasets import Dataset

        if tokenizer.eos_token_id is None:
            raise ValueError("the model's tokenizer has no EOS token: a causal LM needs one to end its answers")
        chat = self.uses_chat_template(tokenizer)
        ids, targets, prompt_lengths, cut, too_long = [], [], [], [], []
        for i, row in df.reset_index(drop=True).iterrows():
            prompt = self._prompt(row, tokenizer, chat)
            response = [*tokenizer(row["label"], add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
            if len(prompt) >= max_length:
                too_long.append(i)
            elif len(prompt) + len(response) > max_length:
                cut.append(i)
                response = response[: max_length - len(prompt)]
            ids.append(prompt + response)
            targets.append([-100] * len(prompt) + response)
            prompt_lengths.append(len(prompt))
        if too_long:
            raise DataError(f"{len(too_long)} prompt(s) fill model.max_length={max_length} tokens, leaving no room "
                            f"for the response, e.g. rows {too_long[:5]}; raise model.max_length")
        if cut:
            log.warning("%d of %d response(s) cut at model.max_length=%d tokens (their end and EOS are not learned), "
                        "e.g. rows %s", len(cut), len(df), max_length, cut[:5])
        return Dataset.from_dict({"input_ids": ids, "labels": targets, "prompt_length": prompt_lengths})

    def collator(self, tokenizer: Any, pad_to_multiple_of: int | None = None) -> Any:
        """trl's collator: right padding, ``labels`` padded with -100."""
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

        return DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, pad_to_multiple_of=pad_to_multiple_of)

    def build_model(self, cfg: ModelConfig, labels: list[str], train: pd.DataFrame | None = None) -> nn.Module:
        from transformers import AutoModelForCausalLM

        from ftlab.learning.modeling import (  # model.name resolution and its errors, as for every task
            _load,
            pretrained_config,
        )

        try:
            model = _load("model", AutoModelForCausalLM, cfg, config=pretrained_config(cfg))
        except ValueError as e:
            raise ValueError(f"model.name {cfg.name!r} is not a causal LM ({e})") from e
        config: Any = model.config
        if config.pad_token_id is None:
            config.pad_token_id = config.eos_token_id
            model.generation_config.pad_token_id = config.eos_token_id
        if self.opts.gradient_checkpointing:
            # non-reentrant: works when the embeddings are frozen (peft methods) without extra hooks
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            config.use_cache = False
        return model

    # ---- outputs ----------------------------------------------------------------------------
    def reduce_logits(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per label position: the argmax token id predicted for it and its negative log-likelihood
        (shifted: position t is predicted from the tokens before it; virtual tokens dropped)."""
        from ftlab.learning.generation import teacher_forced

        return teacher_forced(logits, labels)

    def eval_metrics(self, logits: np.ndarray, label_ids: np.ndarray, labels: list[str]) -> dict[str, float]:
        from ftlab.learning.generation import row_stats

        rows = [row_stats(p[:, 0], p[:, 1], y) for p, y in zip(logits, label_ids, strict=True)]
        frame = pd.DataFrame(rows)
        return {"exact_match": float((frame["correct_tokens"] == frame["response_tokens"]).mean()),
                "token_f1": float(frame["argmax_f1"].mean()), **_token_metrics(frame)}

    def test_outputs(self, model: nn.Module, tokenizer: Any, dataset: Any, batch_size: int, bf16: bool) -> list[Any]:
        from ftlab.learning.generation import generate_and_score

        return generate_and_score(model, tokenizer, dataset, self.collator(tokenizer), batch_size, bf16,
                                  self.opts.max_new_tokens)

    def predictions(self, df: pd.DataFrame, logits: list[Any], labels: list[str], decision: dict) -> pd.DataFrame:
        """Prompt, reference and generated answer with their scores, and the teacher-forced counts."""
        out = pd.DataFrame({"text": df["text"].to_numpy(), "label": df["label"].to_numpy()})
        out = pd.concat([out, pd.DataFrame(list(logits))], axis=1)
        out["exact_match"] = [float(exact_match(p, r)) for p, r in zip(out["prediction"], out["label"], strict=True)]
        out["token_f1"] = [token_f1(p, r) for p, r in zip(out["prediction"], out["label"], strict=True)]
        if self.opts.answer != "none":
            out["answer_correct"] = [float(answer_correct(p, r, self.opts.answer, labels))
                                     for p, r in zip(out["prediction"], out["label"], strict=True)]
        return out

    def test_metrics(self, predictions: pd.DataFrame, labels: list[str]) -> dict:
        metrics = {"exact_match": float(predictions["exact_match"].mean()),
                   "token_f1": float(predictions["token_f1"].mean()), **_token_metrics(predictions)}
        if "answer_correct" in predictions:
            metrics["answer_accuracy"] = float(predictions["answer_correct"].mean())
        return metrics

    def example_scores(self, predictions: pd.DataFrame, labels: list[str]) -> np.ndarray:
        return predictions["exact_match"].to_numpy(dtype=float)[:, None]

    def drift_columns(self, predictions: pd.DataFrame, labels: list[str]) -> tuple[dict, list[str]]:
        """Words per reference and per generated answer."""
        return {f"{c}_words": predictions[c].map(lambda t: len(str(t).split())).to_numpy()
                for c in ("label", "prediction")}, []

    def trivial(self, train: pd.DataFrame, test: pd.DataFrame, labels: list[str]) -> tuple[str, pd.DataFrame]:
        """The train split's most frequent response, answered to every prompt."""
        answer = str(train["label"].value_counts().idxmax())
        rows = [{"prediction": answer, "response_tokens": 0, "correct_tokens": 0, "nll": np.nan}] * len(test)
        return "most_frequent_response", self.predictions(test, rows, labels, {})


def _token_metrics(frame: pd.DataFrame) -> dict[str, float]:
    """Token accuracy and perplexity over every response token of the frame's rows."""
    tokens = frame["response_tokens"].sum()
    if tokens == 0:
        return {"token_accuracy": float("nan"), "perplexity": float("nan")}
    return {"token_accuracy": float(frame["correct_tokens"].sum() / tokens),
            "perplexity": float(np.exp(frame["nll"].sum() / tokens))}
