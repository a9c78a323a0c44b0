"""The promoted model's card, ``README.md``: YAML metadata a model hub or DVC Studio reads, the
verdict, the numbers with what they were measured on, and how to load the model without ftlab."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import yaml

from ftlab.core.builtins import BUILTIN_DEMO, BUILTIN_MODEL
from ftlab.core.escape import md_code, md_fence, md_link, md_text
from ftlab.core.record import RunRecord
from ftlab.learning.config import Config
from ftlab.serving.reference import REFERENCE_ROWS

HUB_NAMES = {BUILTIN_MODEL: "sentence-transformers/all-MiniLM-L6-v2"}


def _row(comparison: dict, meta: dict) -> dict | None:
    """The comparison's summary of the promoted method at the promoted train size (seeds pooled)."""
    return next((r for r in comparison["summary"]
                 if r["method"] == meta["method"] and r["train_size"] == meta["train_size"]), None)


def _card_metadata(cfg: Config, meta: dict, record: RunRecord, comparison: dict) -> dict:
    row = _row(comparison, meta)
    task = cfg.task_type()
    results = [{"type": m.name, "name": f"test {m.label} (this seed)", "value": record.quality[m.name]} for m in task.metrics]
    if row is not None and row["ci_low"] is not None:  # an interval needs two seeds or more
        results.append({"type": task.primary.name, "name": f"test {task.primary.label}, mean over {row['n']} seeds, "
                        f"{comparison['confidence']:.0%} interval [{row['ci_low']:.4f}, {row['ci_high']:.4f}]",
                        "value": row["mean"]})
    params = {"method_params": cfg.params_for(meta["method"]).model_dump(mode="json"),
              "model": cfg.model.model_dump(mode="json"), "train": cfg.train.model_dump(mode="json")}
    library = {"sentence-transformers": "sentence-transformers", "bi-encoder": "sentence-transformers",
               "ftlab": "ftlab"}.get(meta["layout"], "transformers")
    return {
        "library_name": library, "pipeline_tag": meta["task"], "tags": ["ftlab", meta["method"], meta["task_type"]],
        "base_model": HUB_NAMES.get(meta["base_model"], meta["base_model"]),
        "model-index": [{"name": cfg.promote.name, "results": [{"task": {"type": meta["task"]},
                                                                  "dataset": {"name": str(cfg.data.source), "type": "custom"},
                                                                  "metrics": results}]}],
        "ftlab": {**{k: meta[k] for k in ("method", "seed", "train_size", "layout", "precision", "labels",
                                            "data_fingerprint")},
                  "primary_interval": None if row is None else [row["ci_low"], row["ci_high"]],
                  "verdict": comparison["recommendation"]["text"], "params": params},
    }


LOADERS = {
    "transformers": """```python
from transformers import pipeline
classify = pipeline("text-classification", model="{dir}")
classify(["a sentence"], truncation=True, top_k=None)
```""",
    "sentence-transformers": """```python
from sentence_transformers import SentenceTransformer
model = SentenceTransformer("{dir}")                  # Transformer + mean Pooling + Dense head
logits = model.encode(["a sentence"], convert_to_tensor=True)  # one logit per class
labels = model[0].auto_model.config.id2label          # class id -> name
```
No `transformers` class does mean pooling + a linear head; sentence-transformers' standard modules do,
with no remote code.""",
    "bi-encoder": """```python
from sentence_transformers import SentenceTransformer
model = SentenceTransformer("{dir}")                    # Transformer + mean Pooling + Normalize
u = model.encode(["first texts"], convert_to_tensor=True)
v = model.encode(["second texts"], convert_to_tensor=True)
cosine = model.similarity_pairwise(u, v)                # the trained similarity (regression)
```
Each text is encoded alone (a bi-encoder): embed a corpus once, then search or deduplicate by cosine.
A regressor's score on the targets' scale is `low + (1 + cosine) / 2 * (high - low)` (`score_range` in
`ftlab.json`); Spearman and Pearson are those of the cosine. A pair classifier adds its head:
`logits = torch.cat([u, v, (u - v).abs()], -1) @ W.T + b`, with `W`, `b` = `weight`, `bias` of
`pair_classifier.safetensors` (`safetensors.torch.load_file`); `labels` in `ftlab.json`.""",
    "peft": """```python
from peft import PeftModel
from transformers import AutoModelForSequenceClassification
base = AutoModelForSequenceClassification.from_pretrained("{dir}")   # model.pooling: cls
model = PeftModel.from_pretrained(base, "{dir}/adapter")
```
This method (prompt, prefix or p-tuning) cannot be merged into the weights: the base model is here,
the trained virtual tokens and head in `adapter/`. With `model.pooling: mean` the base is an
`AutoModel` encoder: wrap it in a module with attributes `encoder` and `classifier`
(`torch.nn.Linear(hidden_size, num_labels)`) that averages the last hidden states over the attention
mask, then apply `PeftModel.from_pretrained` to that module.""",
    "AutoModelForTokenClassification": """```python
from transformers import pipeline
ner = pipeline("token-classification", model="{dir}/model", tokenizer="{dir}/tokenizer",
               aggregation_strategy="simple")
ner(["A sentence about Ann in Berlin."])
```
`model/` is transformers' own token-classification model (LoRA, DoRA or IA3 merged into the weights);
`labels.json` lists the tags, also `id2label` in `model/config.json`. Training cut texts at `max_length`
sub-tokens (`ftlab.json`): to cut where it did, pass the tokenizer loaded with
`AutoTokenizer.from_pretrained("{dir}/tokenizer", model_max_length=max_length)`.""",
    "AutoModelForCausalLM": """```python
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained("{dir}/model")
tokenizer = AutoTokenizer.from_pretrained("{dir}/tokenizer")
prompt = "user: Name a colour.\\nassistant:"  # the plain template; with a chat template:
# tokenizer.apply_chat_template([{{"role": "user", "content": "Name a colour."}}], add_generation_prompt=True, tokenize=False)
ids = tokenizer(prompt, return_tensors="pt")
answer = model.generate(**ids, max_new_tokens=64, do_sample=False)[0, ids["input_ids"].shape[1]:]
tokenizer.decode(answer, skip_special_tokens=True).strip()
```
`model/` holds the fine-tuned decoder's whole weights (LoRA, DoRA or IA3 merged in). The run trained
each prompt as a user message in the tokenizer's chat template where it has one (`task.chat_template`,
in `config.yaml`), else in the plain template above (pass `add_special_tokens=False` to the tokenizer after a chat template: it
writes BOS itself); `ftlab predict` answers the same way, greedily.""",
    "ftlab": """```python
from ftlab.analysis.runs import load_run
config, model, labels = load_run("{dir}")      # the run's own files: model/, tokenizer/, config.yaml
```
Without ftlab: a run trained with `model.pooling: cls` by a method that saves whole weights (full,
llrd, freeze, bitfit) leaves in `model/` transformers' `AutoModelForSequenceClassification` (a
cross-encoded pair's two texts go to the tokenizer together, a regressor's one output is the score, a
multi-label tagger's outputs take a sigmoid each, against the run's tuned thresholds). Under mean pooling
(the default) the head reads ftlab's pooled tokens and an adapter method saves a peft adapter: load
those with ftlab. `ftlab predict` and `ftlab monitor` serve every task ftlab trains.""",
}


def data_note(cfg: Config, n_test: int | None) -> str:
    """What the test number was measured on, and so what it does and does not promise."""
    source = cfg.data.source
    examples = f" ({n_test:,} examples)" if n_test else ""
    if source == BUILTIN_DEMO:
        demo = cfg.data.demo
        return (f"**The test data is synthetic.** `{BUILTIN_DEMO}` is ftlab's built-in demo set: {demo.n_samples:,} "
                "short review-like sentences (products, films, restaurants, hotels) composed from templates, with "
                f"{demo.label_noise:.0%} of labels flipped on purpose; the test split{examples} is a held-out part "
                "of it. The number shows how well the model learned that template grammar, not how it will do on "
                "real text: expect real sentences to score lower, possibly much lower. Before using this model, "
                "measure it on labelled held-out data of your own (`ftlab predict` on it, then compare labels).")
    if isinstance(source, str) and source.startswith("builtin:"):
        return (f"**The test data is synthetic**: a held-out part{examples} of the built-in generated set {md_code(source)}. "
                "The number promises nothing on real data: measure the model on held-out data of your own.")
    if isinstance(source, dict) and "test" in source:
        where = f"the file {md_code(source['test'])}{examples}, given as the test split"
    elif isinstance(source, dict) or not source.startswith("hub:"):
        file = source["train"] if isinstance(source, dict) else source
        where = (f"a held-out part{examples} of {md_code(file)} (data.test_size {cfg.data.test_size:g}, drawn at random, "
                 "never trained or tuned on)")
    else:
        where = f"the test split{examples} of {md_code(source)} (its own, or a held-out part of its training split)"
    return (f"The test set is {where}. The number holds for data like it; text from another source, domain or "
            "period can score lower: measure on held-out data of that kind before relying on it.")


def model_card(cfg: Config, meta: dict, record: RunRecord, comparison: dict, out: Path) -> str:
    """The model card: YAML metadata, the verdict, the numbers and how to load it without ftlab."""
    front = yaml.safe_dump(_card_metadata(cfg, meta, record, comparison), sort_keys=False, allow_unicode=True)
    report = os.path.relpath(cfg.report.dir / "comparison.md", out)
    labels = f" ({md_text(', '.join(map(str, meta['labels'])))})" if meta["labels"] else ""  # a regressor or a causal LM has none
    return (f"---\n{front}---\n\n# {cfg.promote.name}\n\n"
            f"A {meta['task']} model{labels} fine-tuned from {md_code(meta['base_model'])} with "
            f"{md_code(meta['method'])} (seed {meta['seed']}, train size {meta['train_size']}), promoted by ftlab.\n\n"
            + "Test-set " + ", ".join(f"{m.label} {record.quality[m.name]:.4f}" for m in cfg.task_type().metrics)
            + f" (evaluated in {meta['precision']}).\n\n"
            + data_note(cfg, record.n_test) + "\n\n"
            f"> {md_text(comparison['recommendation']['text'])}\n\nFull comparison: {md_link(report)}.\n\n"
            f"## Load it without ftlab\n\n{LOADERS[meta.get('model_class', meta['layout'])].format(dir='path/to/' + cfg.promote.name)}\n\n"
            "## Use it with ftlab\n\n" + md_fence(f"ftlab predict --model {shlex.quote(str(out))} --input new.csv --output scored.csv\n"
                                                  "ftlab monitor --input new.csv      # drift against reference.parquet, "
                                                  "scored held-out test rows", "bash") + "\n\n"
            f"`ftlab.json` records the task, text column, label names, pooling, max length, base model and method; "
            f"`reference.parquet` holds up to {REFERENCE_ROWS:,} scored test rows, the monitor's reference.\n")
