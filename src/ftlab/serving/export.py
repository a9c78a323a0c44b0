"""A trained classifier as a model directory that standard libraries load without ftlab.

Four layouts, chosen by the model's pooling, the pair encoding and whether peft can fold the method into the weights:

- ``transformers`` (``model.pooling: cls``): an ``AutoModelForSequenceClassification`` directory
  with the tokenizer and ``id2label``; ``transformers.pipeline("text-classification", model=dir)``.
- ``sentence-transformers`` (``model.pooling: mean``, which no ``transformers`` class has): Transformer +
  Pooling(mean) + Dense(identity) modules, so ``SentenceTransformer(dir).encode(texts)`` returns the
  logits; label names are in ``config.json``'s ``id2label``.
- ``bi-encoder`` (``task.pair_encoding: bi``): Transformer + Pooling(mean) + Normalize, the layout of
  all-MiniLM-L6-v2 itself: ``encode`` each text, the cosine of two embeddings is the trained
  similarity; a pair classifier's head on ``(u, v, |u - v|)`` is ``pair_classifier.safetensors``.
- ``peft``: prompt, prefix and p-tuning cannot be merged; the base model sits in the directory and
  the adapter (with the trained head) in ``adapter/``, loaded with ``PeftModel.from_pretrained``.

LoRA, DoRA and IA3 are merged (``merge_and_unload``) first, so they export as one of the first two.

An NER model is promoted as its run's files, its ``model/`` rewritten by :func:`export_token_classifier`
as transformers' own ``*ForTokenClassification`` (the encoder under the architecture's prefix, e.g.
``bert.``, not ftlab's ``encoder.``): ``AutoModelForTokenClassification.from_pretrained`` loads every
trained weight, and :func:`load_promoted` is how ftlab itself loads a promoted run-files model. A
causal LM's ``model/`` is its decoder's whole weights (:func:`export_causal_lm`), adapters merged.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, cast

from torch import nn

from ftlab.core.config import ModelConfig
from ftlab.learning.config import Config
from ftlab.learning.heads import MeanPoolClassifier, TokenClassifier
from ftlab.learning.modeling import _load, build_model, load_tokenizer, require_safetensors
from ftlab.learning.tasks import DataError
from ftlab.learning.tasks.biencoder import BiEncoder

Layout = Literal["transformers", "sentence-transformers", "bi-encoder", "peft", "ftlab"]
PAIR_HEAD = "pair_classifier.safetensors"  # a bi-encoded pair classifier's head, beside the encoder
TOKEN_CLASS = "AutoModelForTokenClassification"  # ftlab.json's model_class of an NER model/ in transformers' layout
CAUSAL_CLASS = "AutoModelForCausalLM"  # ... and of a causal LM's model/ (whole weights, adapters merged)

log = logging.getLogger(__name__)


def export_classifier(model: nn.Module, tokenizer: Any, cfg: ModelConfig, labels: list[str], out: Path) -> Layout:
    """Write ``model`` (a finished run's classifier, eval mode) into the empty directory ``out``."""
    from peft import PeftModel

    tokenizer.model_max_length = cfg.max_length  # truncation=True then cuts where training did
    if isinstance(model, PeftModel):
        if not hasattr(model.base_model, "merge_and_unload"):  # prompt learning: nothing to merge into
            _save_peft(model, cfg, labels, out)
            tokenizer.save_pretrained(str(out))
            return "peft"
        model = model.merge_and_unload()
    if isinstance(model, MeanPoolClassifier):
        _save_sentence_transformers(model, tokenizer, cfg, out)
        return "sentence-transformers"
    if isinstance(model, BiEncoder):
        _save_bi_encoder(model, tokenizer, cfg, out)
        return "bi-encoder"
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    return "transformers"


def _save_sentence_transformers(model: MeanPoolClassifier, tokenizer: Any, cfg: ModelConfig, out: Path) -> None:
    """Transformer + mean Pooling + a Dense layer holding the classifier, identity activation."""
    from sentence_transformers.sentence_transformer.modules import Dense

    dense = Dense(model.config.hidden_size, model.classifier.out_features, bias=True, activation_function=nn.Identity())
    dense.linear.load_state_dict(model.classifier.state_dict())
    _save_mean_pooled(model.encoder, tokenizer, cfg, out, dense)


def _save_bi_encoder(model: BiEncoder, tokenizer: Any, cfg: ModelConfig, out: Path) -> None:
    """Transformer + mean Pooling + Normalize (what the bi-encoder's ``embed`` computes), and the head of
    a pair classifier, if any, as plain tensors ``weight`` (labels, 3 x hidden) and ``bias``."""
    from safetensors.torch import save_file
    from sentence_transformers.sentence_transformer.modules import Normalize

    _save_mean_pooled(model.encoder, tokenizer, cfg, out, Normalize())
    if model.classifier is not None:
        save_file({k: v.detach().contiguous().cpu() for k, v in model.classifier.state_dict().items()}, str(out / PAIR_HEAD))


def _save_mean_pooled(encoder: nn.Module, tokenizer: Any, cfg: ModelConfig, out: Path, last: nn.Module) -> None:
    """A sentence-transformers directory: the trained encoder, mean pooling, then ``last``."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    encoder_dir = out / ".encoder"
    cast(Any, encoder).save_pretrained(str(encoder_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(encoder_dir))
    with _no_load_report():
        transformer = Transformer(str(encoder_dir), max_seq_length=cfg.max_length)
    _check_loaded(encoder, transformer.auto_model, encoder_dir)
    modules = [transformer, Pooling(cast(Any, encoder).config.hidden_size, pooling_mode="mean"), last]
    SentenceTransformer(modules=modules, device="cpu").save(str(out), create_model_card=False)
    shutil.rmtree(encoder_dir)


@contextmanager
def _no_load_report() -> Iterator[None]:
    """Keep transformers' LOAD REPORT out of one load. sentence-transformers loads the encoder as an
    ``AutoModel`` with a [CLS] pooler, which the trained encoder does not have (``MeanPoolClassifier``
    drops it): the report lists ``pooler.dense.*`` as MISSING and suggests training, which reads as an
    error. ``_check_loaded`` checks the load instead. transformers' tensor-parallel plan check warns at
    the same load that BERT's layers "were not sharded", which means nothing without tensor parallelism."""
    loggers = [logging.getLogger(name) for name in ("transformers.modeling_utils",  # logs the report as a warning
                                                    "transformers.distributed.tensor_parallel")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _check_loaded(trained: nn.Module, loaded: nn.Module, where: Path) -> None:
    """What the silenced load report would have said: every trained encoder weight must arrive
    unchanged; weights the loaded model adds are new (a warning names them, unless they are the pooler's)."""
    import torch

    ours, theirs = trained.state_dict(), loaded.state_dict()
    wrong = [k for k, v in ours.items() if k not in theirs or not torch.equal(v.cpu(), theirs[k].cpu())]
    if wrong:
        raise RuntimeError(f"sentence-transformers did not load the trained encoder from {where} as saved: "
                           f"{len(wrong)} weights missing or changed, e.g. {wrong[:5]}")
    added = sorted(theirs.keys() - ours.keys())
    if any(k.startswith("pooler.") for k in added):
        log.info("export: the [CLS] pooler (pooler.*) gets untrained weights; mean pooling does not use it")
    if others := [k for k in added if not k.startswith("pooler.")]:
        log.warning("export: sentence-transformers' %s adds untrained weights: %s", type(loaded).__name__, others)


def _save_peft(model: Any, cfg: ModelConfig, labels: list[str], out: Path) -> None:
    """The pretrained base (with ``id2label``) at the top, the adapter and trained head in ``adapter/``."""
    base = build_model(cfg, labels)
    if isinstance(base, MeanPoolClassifier):
        base.encoder.save_pretrained(str(out), safe_serialization=True)
    else:
        base.save_pretrained(str(out), safe_serialization=True)
    model.save_pretrained(str(out / "adapter"), safe_serialization=True)
    config_file = out / "adapter" / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = None  # peft stores an absolute path; the base is the parent dir
    config_file.write_text(json.dumps(config, indent=2))


def load_exported(model_dir: Path, meta: dict) -> tuple[nn.Module, Any]:
    """The classifier and tokenizer of an exported directory, for ``ftlab predict`` and ``monitor``.

    The weights are the exported ones; the model object is ftlab's, so that prediction batches by
    length and runs in bf16 like evaluation did.
    """
    from safetensors.torch import load_file

    cfg = ModelConfig(name=str(model_dir), pooling=meta["pooling"], max_length=meta["max_length"])
    labels = meta["labels"]
    for part in (model_dir, model_dir / "adapter", model_dir / "2_Dense"):  # before anything loads
        require_safetensors(part, "model directory")
    if meta["layout"] == "bi-encoder":
        raise DataError(f"{model_dir}: a bi-encoded pair model; ftlab predict and monitor serve single-text "
                        "classification models so far: load it with sentence_transformers.SentenceTransformer "
                        "(its README.md says how)")
    model = build_model(cfg, labels)
    if meta["layout"] == "peft":
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(model_dir / "adapter"))
    elif meta["layout"] == "sentence-transformers":
        head = load_file(str(model_dir / "2_Dense" / "model.safetensors"))
        cast(nn.Module, model.classifier).load_state_dict({k.removeprefix("linear."): v for k, v in head.items()})
    return model.eval(), load_tokenizer(cfg)


def load_bi_encoder(model_dir: Path, meta: dict) -> tuple[BiEncoder, Any]:
    """A bi-encoder export as ftlab's :class:`BiEncoder` and its tokenizer, for the promotion gate.

    The encoder is the directory's Transformer module (its root), the score range (a regressor) and
    the pair head (a classifier) what export wrote beside it: the model then scores pairs exactly as
    its run's evaluation did, batched by length and in that run's precision, which
    ``SentenceTransformer.encode`` would not reproduce under bf16.
    """
    from safetensors.torch import load_file
    from transformers import AutoModel

    cfg = ModelConfig(name=str(model_dir), pooling="mean", max_length=meta["max_length"])
    with _no_load_report():  # the [CLS] pooler is missing by design (see _no_load_report)
        encoder = _load("model", AutoModel, cfg)
    regression = meta["task_type"] == "regression"
    low, high = meta["score_range"] if regression else (0.0, 1.0)
    model = BiEncoder(encoder, len(meta["labels"]), 0.0, "regression" if regression else "single_label_classification",
                      (float(low), float(high)))
    if model.classifier is not None:
        model.classifier.load_state_dict(load_file(str(model_dir / PAIR_HEAD)))
    return model.eval(), load_tokenizer(cfg)


def export_token_classifier(model: nn.Module, out: Path) -> bool:
    """Write an NER run's model (LoRA, DoRA or IA3 merged first) to ``out`` as transformers'
    ``*ForTokenClassification`` of its encoder, so ``from_pretrained`` loads it whole; False, writing
    nothing, for an adapter peft cannot merge (prompt methods: virtual tokens no plain class reads)."""
    from peft import PeftModel
    from transformers import AutoModelForTokenClassification

    if isinstance(model, PeftModel):
        if not hasattr(model.base_model, "merge_and_unload"):
            return False
        model = model.merge_and_unload()
    if not isinstance(model, TokenClassifier):
        raise TypeError(f"export_token_classifier: expected ftlab's TokenClassifier, got {type(model).__name__}")
    target = AutoModelForTokenClassification.from_config(model.config)
    prefix = target.base_model_prefix
    weights = {f"{prefix}.{k}": v for k, v in model.encoder.state_dict().items()}
    weights |= {f"classifier.{k}": v for k, v in model.classifier.state_dict().items()}
    # strict: a weight of either side left over is an architecture this mapping does not fit
    target.load_state_dict(weights, strict=True)
    target.save_pretrained(str(out), safe_serialization=True)
    return True


def export_causal_lm(model: nn.Module, out: Path) -> bool:
    """Write a causal LM run's model (LoRA, DoRA or IA3 merged first) to ``out`` with ``save_pretrained``,
    so ``AutoModelForCausalLM.from_pretrained`` loads it whole; False, writing nothing, for an adapter
    peft cannot merge (prompt methods: their virtual tokens are no weights of the decoder)."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        if not hasattr(model.base_model, "merge_and_unload"):
            return False
        model = model.merge_and_unload()
    cast(Any, model).save_pretrained(str(out), safe_serialization=True)
    return True


def load_promoted(model_dir: Path) -> tuple[Config, nn.Module, list[str]]:
    """A model promoted as its run's files (layout ``ftlab``): its run config, model (eval mode) and
    labels. An NER ``model/`` in transformers' layout loads with transformers' class, which computes
    what ftlab's TokenClassifier did (encoder, dropout, linear head), a causal LM's whole weights with
    ``AutoModelForCausalLM``; any other with ``load_run``."""
    from ftlab.analysis.rundir import Run
    from ftlab.analysis.runs import load_run

    meta = json.loads((model_dir / "ftlab.json").read_text())
    if meta.get("model_class") not in (TOKEN_CLASS, CAUSAL_CLASS):
        return load_run(model_dir)
    from transformers import AutoModelForCausalLM, AutoModelForTokenClassification

    require_safetensors(model_dir / "model", "model directory")
    loader = AutoModelForTokenClassification if meta["model_class"] == TOKEN_CLASS else AutoModelForCausalLM
    model = loader.from_pretrained(str(model_dir / "model"), use_safetensors=True)
    run = Run(model_dir)
    return run.config, model.eval(), run.labels
