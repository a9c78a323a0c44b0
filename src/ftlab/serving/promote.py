"""Promote one cell of the comparison to ``<promote.dir>/<promote.name>/``: a standalone model.

By default the cell is the comparison's recommendation (``cheapest_within_tolerance``) at its
largest train size; among that method's seeds, the one with the best validation score (never the
test score: the test set judges the pick, it does not make it). The directory holds the exported
model (:mod:`ftlab.serving.export`), ``ftlab.json`` (what ``ftlab predict`` and ``ftlab monitor`` need to
know), ``reference.parquet`` (scored held-out test rows, the monitor's reference) and a model
card, ``README.md``, whose YAML metadata a model hub or DVC Studio reads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import shutil
from pathlib import Path
from typing import Any, Literal

import yaml

from ftlab.core.builtins import BUILTIN_DEMO, BUILTIN_MODEL
from ftlab.core.config import Cell
from ftlab.core.escape import md_code, md_fence, md_link, md_text
from ftlab.core.io import atomic_dir, write_json, write_text
from ftlab.core.layout import run_dir
from ftlab.core.record import RunRecord, read_record, write_record
from ftlab.data.prepare import fingerprint
from ftlab.learning.config import Config
from ftlab.serving import versions

log = logging.getLogger(__name__)

FORMAT = "ftlab-model/1"
HUB_NAMES = {BUILTIN_MODEL: "sentence-transformers/all-MiniLM-L6-v2"}


class PromoteError(ValueError):
    """Nothing to promote: no comparison yet, or the named cell was not trained."""


def model_dir(cfg: Config) -> Path:
    return cfg.promote.dir / cfg.promote.name


def choose_cell(cfg: Config, comparison: dict, method: str | None = None, seed: int | None = None,
                train_size: int | Literal["all"] | None = None) -> Cell:
    """The recommended cell, or the one named; its run directory must be finished."""
    method = method or comparison["recommendation"]["cheapest_within_tolerance"]["method"]
    size = train_size if train_size is not None else comparison["train_sizes"][-1]  # sorted by examples
    cells = [Cell(method, c["seed"], c["train_size"]) for c in comparison["cells"]
             if c["method"] == method and c["train_size"] == size and seed in (None, c["seed"])]
    if not cells:
        where = cfg.report.dir / "comparison.json"
        raise PromoteError(f"{where} has no cell method={method} seed={seed} train_size={size}; "
                           f"trained: {sorted({(c['method'], c['seed'], c['train_size']) for c in comparison['cells']})}")

    task = cfg.task_type()

    def validation_score(c: Cell) -> float:
        best = read_record(run_dir(cfg, c)).best_validation
        return best.value if task.metric(best.metric).higher_is_better else -best.value

    return max(cells, key=validation_score)  # the first seed on ties


def promote(cfg: Config, method: str | None = None, seed: int | None = None,
            train_size: int | Literal["all"] | None = None) -> dict:
    """Export the chosen cell to ``model_dir(cfg)``, whole or not at all, if the gate lets it replace the
    model serving there (:mod:`ftlab.serving.gate`); returns the serving model's ``ftlab.json`` with
    the decision under ``promotion`` (also in ``<report.dir>/promotion.json``)."""
    from transformers import AutoTokenizer

    from ftlab.analysis.runs import load_run
    from ftlab.serving.export import (
        CAUSAL_CLASS,
        TOKEN_CLASS,
        export_causal_lm,
        export_classifier,
        export_token_classifier,
    )
    from ftlab.serving.gate import gate_run, record_digest

    report = cfg.report.dir / "comparison.json"
    if not report.is_file():
        raise PromoteError(f"{report} not found: run `ftlab compare` (or `dvc repro compare`) before promoting")
    comparison = json.loads(report.read_text())
    cell = choose_cell(cfg, comparison, method, seed, train_size)
    run, out = run_dir(cfg, cell), model_dir(cfg)
    decision = gate_run(cfg, run, out) | {"challenger": {"method": cell.method, "seed": cell.seed,
                                                          "train_size": cell.train_size, "run": str(run)}}
    if not decision["promoted"]:
        return versions.keep_serving(cfg, out, decision)
    if decision.get("same_run"):  # the serving model's own run: a fresh export, the same version
        decision["version"] = versions.serving(out)["version"]  # type: ignore[index]
    else:
        decision["version"] = versions.next_version(cfg, out)
        versions.archive(cfg, out)
    run_cfg, model, labels = load_run(run)
    tokenizer = AutoTokenizer.from_pretrained(str(run / "tokenizer"))
    record = read_record(run)
    with atomic_dir(out) as tmp:
        if standalone(run_cfg):
            layout = export_classifier(model, tokenizer, run_cfg.model, labels, tmp)
            extra = bi_meta(model)
        else:  # the run's own files (loaded by serving.export.load_promoted), model/ in transformers' layout where it can be
            layout, extra = "ftlab", {}
            shutil.copytree(run / "tokenizer", tmp / "tokenizer")
            if run_cfg.task.type == "token_classification" and export_token_classifier(model, tmp / "model"):
                extra = {"model_class": TOKEN_CLASS}
            elif run_cfg.task.type == "causal_lm" and export_causal_lm(model, tmp / "model"):
                extra = {"model_class": CAUSAL_CLASS}
            else:  # other tasks' run files; an NER or causal LM prompt, prefix or p-tuning adapter
                shutil.copytree(run / "model", tmp / "model")
            shutil.copy(run / "config.yaml", tmp / "config.yaml")
            write_json(tmp / "labels.json", labels)
            write_record(tmp, record)
        reference(run, tmp / "reference.parquet")
        meta = task_meta(run_cfg, labels) | extra | {
            "format": FORMAT, "version": decision["version"], "layout": layout, "method": cell.method, "seed": cell.seed,
            "train_size": cell.train_size, "run": str(run), "run_record_sha256": record_digest(run),
            "precision": record.cost.precision,
            "base_model": run_cfg.model.name, "pooling": run_cfg.model.pooling, "max_length": run_cfg.model.max_length,
            "data_fingerprint": data_fingerprint(cfg),
            # held-out quality on the whole test split: the monitor's baseline of the primary metric for labelled new data
            "test_metrics": {m.name: record.quality[m.name] for m in run_cfg.task_type().metrics}, "n_test": record.n_test,
        }
        write_json(tmp / "ftlab.json", meta)
        write_text(tmp / "README.md", model_card(cfg, meta, record, comparison, out) + versions.card_note(decision))
    versions.keep(cfg, out, decision)
    write_json(versions.promotion_file(cfg), decision)
    log.info("promoted %s %s (%s layout) to %s as v%d", cell.method, cell.name, layout, out, decision["version"])
    return meta | {"promotion": decision}


REFERENCE_ROWS = 1000


def reference(run: Path, out: Path) -> None:
    """The monitor's reference: up to 1,000 scored test rows (a seeded sample). Held-out rows, not
    training rows: on its own training rows the model is more confident and more accurate than on
    any new data, and fresh samples of the training distribution were flagged as drift on
    confidence against them (benchmarks/monitor.py). The rows are the task's own predictions frame,
    which holds what each task's monitor reads (:mod:`ftlab.serving.monitor_tasks`): the text and a
    pair's second text, the label as prepared, and the prediction with its scores (class or label
    probabilities; a regressor's score; an NER model's words and tag ids)."""
    import pandas as pd

    rows = pd.read_parquet(run / "predictions.parquet")
    if len(rows) > REFERENCE_ROWS:
        rows = rows.sample(n=REFERENCE_ROWS, random_state=0).sort_index()
    rows.to_parquet(out, index=False)


def standalone(cfg: Config) -> bool:
    """Whether the run exports to a standard library's format: single-text classification does (a
    transformers or sentence-transformers directory), and so do bi-encoded pairs (a sentence-transformers
    encoder); cross-encoded pairs, regression, multi-label, NER and causal LMs are promoted as ftlab run
    files for now (``layout: ftlab``, loaded with ``ftlab.analysis.runs.load_run``). The task says which."""
    return cfg.task_type().exportable()


def task_meta(cfg: Config, labels: list[str]) -> dict:
    """The task's part of ``ftlab.json``: what the model reads and what it predicts."""
    opts: Any = cfg.task
    pair_column = getattr(opts, "text_pair_column", None)  # pairs, cross- or bi-encoded
    pair = {"text_pair_column": pair_column, "pair_encoding": getattr(opts, "pair_encoding", "cross")} if pair_column else {}
    # a causal LM reads its prompts and answers what its responses held (text_column and label_column are unused)
    text, label = ((opts.prompt_column, opts.response_column) if cfg.task.type == "causal_lm"
                   else (cfg.task.text_column, cfg.task.label_column))
    return {"task": cfg.task_type().pipeline_tag(), "task_type": cfg.task.type, "text_column": text, **pair,
            "label_column": label, "labels": labels}


def bi_meta(model: object) -> dict:
    """A bi-encoded regressor's score range: its prediction is ``low + (1 + cos) / 2 * (high - low)``."""
    from ftlab.learning.tasks.biencoder import BiEncoder

    model = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft-wrapped one
    if not isinstance(model, BiEncoder) or model.classifier is not None:
        return {}
    return {"score_range": list(model.score_range())}


def data_fingerprint(cfg: Config) -> dict:
    """The data config's hash and a hash of the prepared training split's bytes."""
    train = cfg.data.prepared_dir / "train.parquet"
    content = hashlib.sha256(train.read_bytes()).hexdigest()[:16] if train.is_file() else None
    return {"config": fingerprint(cfg), "train_sha256": content}


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
Only single-text classification exports to a standard library's format so far; this task's head is
ftlab's own, so loading it needs ftlab (`ftlab predict` serves pair classification and regression, multi-label and NER;
`ftlab monitor` every task).""",
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
