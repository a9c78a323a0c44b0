"""Each method trains exactly what its row in the README says, at the learning rates it says."""

from __future__ import annotations

import pytest
import torch

from ftlab.learning.methods import METHODS, get_method
from ftlab.learning.methods.lora import infer_target_modules
from ftlab.learning.modeling import build_model, count_parameters, model_parts

HIDDEN, LAYERS, FFN, LABELS = 32, 4, 64, ["neg", "pos"]
HEAD = HIDDEN * 2 + 2  # the linear classifier of the mean-pooling model


def prepared(cfg, method: str):
    model = get_method(method).prepare(build_model(cfg.model, LABELS), cfg.params_for(method))
    return model, {n for n, p in model.named_parameters() if p.requires_grad}


def test_registry_lists_every_method_of_the_issue():
    expected = {"full", "llrd", "freeze", "bitfit", "lora", "dora", "ia3", "prompt_tuning", "prefix_tuning", "p_tuning", "adapter"}
    assert expected <= set(METHODS)
    assert all(m.summary and m.Params().lr > 0 for m in METHODS.values())


def test_full_trains_everything(make_config):
    model, _ = prepared(make_config(), "full")
    trainable, total = count_parameters(model)
    assert trainable == total > 1_000_000


def test_llrd_one_group_per_layer_with_decayed_lr(make_config):
    cfg = make_config(method_params__llrd={"lr": 1e-3, "decay": 0.5})
    method = get_method("llrd")
    model = method.prepare(build_model(cfg.model, LABELS), cfg.params_for("llrd"))
    groups = method.param_groups(model, cfg.params_for("llrd"), weight_decay=0.0)
    assert [g["name"] for g in groups] == ["head", "layer.3", "layer.2", "layer.1", "layer.0", "embeddings"]
    assert [g["lr"] for g in groups] == [1e-3 * 0.5**d for d in range(6)]
    grouped = [id(p) for g in groups for p in g["params"]]
    assert len(grouped) == len(set(grouped)) == len(list(model.parameters()))  # each exactly once
    parts = model_parts(model)
    assert {id(p) for p in groups[1]["params"]} == {id(p) for _, p in parts.layers[3]}
    assert all("embeddings" in n for n, _ in parts.embeddings)
    assert [n for n, _ in parts.head] == ["classifier.weight", "classifier.bias"]


def test_freeze_trains_top_k_layers_and_head(make_config):
    model, names = prepared(make_config(method_params__freeze={"k": 1}), "freeze")
    assert names == {n for n, _ in model.named_parameters() if n.startswith("encoder.encoder.layer.3.")} | {
        "classifier.weight", "classifier.bias"}
    layer = sum(p.numel() for n, p in model.named_parameters() if n.startswith("encoder.encoder.layer.3."))
    assert count_parameters(model)[0] == layer + HEAD


def test_freeze_rejects_more_layers_than_the_model_has(make_config):
    with pytest.raises(ValueError, match=r"freeze\.k=5 but the model has 4 layers"):
        prepared(make_config(method_params__freeze={"k": 5}), "freeze")


def test_bitfit_trains_biases_and_head(make_config):
    model, names = prepared(make_config(), "bitfit")
    assert names == {n for n, _ in model.named_parameters() if n.endswith(".bias")} | {"classifier.weight"}


def _peft_trainable(model) -> dict[str, int]:
    return {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}


def test_lora_trains_low_rank_query_value_and_head(make_config):
    model, _ = prepared(make_config(method_params__lora={"r": 4}), "lora")
    trainable = _peft_trainable(model)
    lora = {n: c for n, c in trainable.items() if "lora_" in n}
    assert len(lora) == LAYERS * 2 * 2  # A and B, query and value, every layer
    assert all(".query." in n or ".value." in n for n in lora)
    assert sum(lora.values()) == LAYERS * 2 * 2 * 4 * HIDDEN
    head = {n: c for n, c in trainable.items() if "lora_" not in n}
    assert all("classifier" in n for n in head) and sum(head.values()) == HEAD


def test_dora_adds_a_magnitude_vector_per_adapted_matrix(make_config):
    cfg = make_config(method_params__lora={"r": 4}, method_params__dora={"r": 4})
    lora = count_parameters(prepared(cfg, "lora")[0])[0]
    dora = count_parameters(prepared(cfg, "dora")[0])[0]
    assert dora - lora == LAYERS * 2 * HIDDEN


def test_ia3_trains_only_scaling_vectors_and_head(make_config):
    model, names = prepared(make_config(), "ia3")
    assert all("ia3_l" in n or "classifier" in n for n in names)
    vectors = [p for n, p in model.named_parameters() if "ia3_l" in n]
    assert vectors and all(p.dim() == 2 and 1 in p.shape for p in vectors)
    assert sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and "classifier" in n) == HEAD


@pytest.mark.parametrize(
    ("method", "params", "expected"),
    [
        ("prompt_tuning", {"num_virtual_tokens": 5, "init": "random"}, 5 * HIDDEN),
        ("prefix_tuning", {"num_virtual_tokens": 5}, 5 * LAYERS * 2 * HIDDEN),
        # p-tuning's MLP encoder: three linear layers around the virtual-token embedding
        ("p_tuning", {"num_virtual_tokens": 5, "encoder_hidden_size": 16},
         5 * HIDDEN + (HIDDEN * 16 + 16) + (16 * 16 + 16) + (16 * HIDDEN + HIDDEN)),
    ],
)
def test_prompt_methods_train_virtual_tokens_and_head(make_config, method, params, expected):
    model, _ = prepared(make_config(**{f"method_params__{method}": params}), method)
    trainable = _peft_trainable(model)
    head = sum(c for n, c in trainable.items() if "classifier" in n)
    assert head == HEAD
    assert sum(trainable.values()) - head == expected
    assert not any(n.startswith("base_model.encoder") for n in trainable)


def test_generic_adapter_builds_any_peft_type(make_config):
    _, names = prepared(make_config(method_params__adapter={"peft_type": "loha", "options": {"r": 2}}), "adapter")
    assert any("hada_" in n for n in names)
    assert all("hada_" in n or "classifier" in n for n in names)


def test_cls_pooling_keeps_the_pooler_in_the_head(make_config):
    cfg = make_config(model__pooling="cls")
    _, names = prepared(cfg, "lora")
    assert any("pooler" in n for n in names) and any("classifier" in n for n in names)
    assert isinstance(build_model(cfg.model, LABELS).classifier, torch.nn.Linear)


@pytest.mark.parametrize(
    ("family", "kwargs", "expected"),
    [
        ("BertConfig", {}, ["query", "value"]),
        ("RobertaConfig", {}, ["query", "value"]),
        ("DistilBertConfig", {"dim": 32, "hidden_dim": 64, "n_layers": 2, "n_heads": 4}, ["q_lin", "v_lin"]),
        ("DebertaV2Config", {}, ["query_proj", "value_proj"]),
        ("GPT2Config", {"n_embd": 32, "n_layer": 2, "n_head": 4}, ["c_attn"]),
        ("LlamaConfig", {"intermediate_size": 64, "num_key_value_heads": 4}, ["q_proj", "v_proj"]),
    ],
)
def test_lora_target_modules_inferred_per_family(family, kwargs, expected):
    import transformers

    base = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64, "vocab_size": 100}
    config = getattr(transformers, family)(**{**base, **kwargs})
    model = transformers.AutoModelForSequenceClassification.from_config(config)
    assert infer_target_modules(model) == expected
