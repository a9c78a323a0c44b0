"""Does trl's SFTTrainer work with ftlab's Trainer subclass, transformers 5.24 and peft 0.21?

A class that puts ``FtlabTrainer`` (resumable length-grouped sampler, ordered evaluation) in front
of trl 1.16's ``SFTTrainer`` trains the tiny random LLaMA-style decoder on prompt/completion pairs
with ``completion_only_loss``, fully and with a LoRA ``peft_config``, and evaluates it. Measured
2026-11-30 (README, "Instruction tuning a decoder LM"): both train; the prompt tokens are masked.
ftlab's causal_lm task still uses only trl's collator: see the README for why.

    python benchmarks/trl_sft.py
"""

from pathlib import Path

from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from ftlab.learning.tasks.causal_lm import plain_prompt
from ftlab.learning.tasks.synthetic import synthetic
from ftlab.learning.tiny_decoder import build
from ftlab.training.trainer import BestState, FtlabTrainer

WORK = Path(__file__).parent / ".work" / "trl_sft"


class FtlabSFTTrainer(FtlabTrainer, SFTTrainer):
    """ftlab's sampler overrides in front of trl's dataset preparation and loss."""


def main() -> None:
    path = build(WORK / "model", "llama")
    tokenizer = AutoTokenizer.from_pretrained(path)
    df = synthetic("copy", 64, 0)
    ds = Dataset.from_dict({"prompt": [plain_prompt([{"role": "user", "content": p}]) for p in df["prompt"]],
                            "completion": [" " + r for r in df["response"]]})
    for peft in (None, LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj", "v_proj"])):
        args = SFTConfig(output_dir=str(WORK / "out"), max_steps=4, per_device_train_batch_size=8, eval_strategy="steps",
                         eval_steps=2, report_to=[], use_cpu=True, completion_only_loss=True, max_length=32,
                         train_sampling_strategy="group_by_length", save_strategy="no", logging_steps=1, data_seed=0)
        trainer = FtlabSFTTrainer(model=AutoModelForCausalLM.from_pretrained(path), args=args, train_dataset=ds,
                                  eval_dataset={"validation": ds.select(range(16))}, processing_class=tokenizer,
                                  peft_config=peft, callbacks=[BestState("loss", False, 0)])
        row = trainer.train_dataset[0]
        masked = sum(y == -100 for y in row["labels"])
        result = trainer.train()
        print(f"{'lora' if peft else 'full'}: columns {trainer.train_dataset.column_names}, {masked} of "
              f"{len(row['labels'])} label positions masked, train loss {result.training_loss:.3f}, "
              f"evaluation keys {sorted(trainer.evaluate())}")


if __name__ == "__main__":
    main()
