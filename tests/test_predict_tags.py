"""``ftlab predict`` for multi-label taggers and NER (issue 34): models promoted as run files, trained
briefly with a tiny BERT (weights drawn wide, see test_predict_pairs.tiny_bert) on slices of the real
GoEmotions and CoNLL-2003 files. Every input row comes back in input order, across chunks, with what
the run gave the same rows and what transformers alone gives on the promoted weights."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ftlab import stages
from ftlab.core import layout
from ftlab.learning.config import load_config
from ftlab.learning.tasks import DataError
from ftlab.serving.predict import predict_file
from ftlab.serving.promote import model_dir
from tests.test_predict_pairs import tiny_bert  # noqa: F401  (a fixture)
from tests.test_tasks import _labels_seen, conll_slices, tsv_slices

FAST = {"model.pooling": "cls", "method_params.full.lr": 1e-3}


def promoted(root, tiny_model: str, task: dict, source: dict, **overrides) -> tuple:
    """Prepare, train ``full``, compare and promote; the config and the run's test predictions."""
    values = {"task": task, "data.source": source, "data.prepared_dir": str(root / "data"), "model.name": tiny_model,
              "model.max_length": 64, "methods": ["full"], "train.batch_size": 16, "train.eval_steps": 4,
              "train.max_steps": 8, "train.train_eval_samples": 16, "train.threads": 1, "train.precision": "fp32",
              "train.checkpoint_dir": None, "train.early_stopping_patience": 0, "train.output_dir": str(root / "runs"),
              "report.dir": str(root / "reports"), "promote.dir": str(root / "models"), **FAST, **overrides}
    cfg = load_config(None, values)
    stages.prepare(cfg)
    stages.train(cfg, "full")
    stages.compare(cfg)
    assert stages.promote(cfg)["layout"] == "ftlab"
    return cfg, pd.read_parquet(layout.run_dir(cfg, stages.cell(cfg, "full")) / "predictions.parquet")


def test_predict_gives_the_labels_above_the_runs_threshold_and_every_probability(tmp_path, tiny_bert):  # noqa: F811
    """GoEmotions test rows in reverse order, 5 a chunk: each row kept, its label set the labels whose
    sigmoid reaches the run's tuned threshold, equal to the run's own test predictions and to
    transformers' sigmoid on the promoted weights (1e-5); Parquet keeps the sets as lists, CSV as JSON."""
    (tmp_path / "src").mkdir()
    source = tsv_slices("goemotions", tmp_path / "src", keep=_labels_seen)
    cfg, expected = promoted(tmp_path, tiny_bert, {"type": "multilabel", "label_column": "labels"}, source)
    labels = json.loads((model_dir(cfg) / "labels.json").read_text())
    threshold = json.loads((model_dir(cfg) / "metrics.json").read_text())["decision"]["threshold"]
    rows = expected.iloc[::-1].reset_index(drop=True)
    new = pd.DataFrame({"id": range(len(rows)), "text": rows["text"]})
    new.to_csv(tmp_path / "new.csv", index=False)
    done = predict_file(model_dir(cfg), tmp_path / "new.csv", tmp_path / "out.parquet", chunk_rows=5, precision="fp32")
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert done["rows"] == len(rows) == 32
    assert list(out.columns) == ["id", "text", "prediction", *(f"prob_{n}" for n in labels)]
    pd.testing.assert_frame_equal(out[["id", "text"]], new.astype(str))  # every field as the file has it
    probs = out[[f"prob_{n}" for n in labels]].to_numpy()
    assert np.ptp(probs[:, 0]) > 0.01  # probabilities that differ by row: a row out of place would show
    np.testing.assert_allclose(probs, rows[[f"prob_{n}" for n in labels]], atol=1e-5)
    sets = [list(s) for s in out["prediction"]]
    assert sets == [[labels[i] for i in ids] for ids in rows["prediction"]]
    assert len({tuple(s) for s in sets}) > 1 and any(sets) and not all(sets)  # sets that differ, some empty

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir(cfg) / "model")).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir(cfg) / "tokenizer"))
    with torch.inference_mode():
        own = np.stack([torch.sigmoid(model(**tokenizer(t, truncation=True, max_length=64, return_tensors="pt")).logits[0]).numpy()
                        for t in new["text"]])
    np.testing.assert_allclose(probs, own, atol=1e-5)
    assert sets == [[labels[i] for i in np.flatnonzero(p >= threshold)] for p in own]

    predict_file(model_dir(cfg), tmp_path / "new.csv", tmp_path / "out.csv", chunk_rows=5, precision="fp32")
    text = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert [json.loads(s) for s in text["prediction"]] == sets
    before = (tmp_path / "out.csv").read_bytes()
    new.loc[20, "text"] = ""
    new.to_csv(tmp_path / "new.csv", index=False)
    with pytest.raises(DataError, match=r"1 empty or missing text\(s\) in column 'text' cannot be scored: row 20 \(line 22\)"):
        predict_file(model_dir(cfg), tmp_path / "new.csv", tmp_path / "out.csv", chunk_rows=5, precision="fp32")
    assert (tmp_path / "out.csv").read_bytes() == before


def sharpened(weights) -> None:
    """The promoted tag head scaled 30 times: eight steps leave every tag near 1/8 on every token, and
    entities then depend on near-ties; scaled, tags are sure and vary, and entities span several tokens."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(weights))
    tensors["classifier.weight"] = tensors["classifier.weight"] * 30
    save_file(tensors, str(weights), metadata={"format": "pt"})


def transformers_ner(model_path, labels: list[str]):
    """The promoted NER model/ as transformers loads it alone (every weight: none missing or new) and
    its pipeline, cutting texts where training did."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    model, info = AutoModelForTokenClassification.from_pretrained(str(model_path / "model"), output_loading_info=True)
    assert not any(info.values()), info
    assert model.config.id2label == dict(enumerate(labels))
    tokenizer = AutoTokenizer.from_pretrained(str(model_path / "tokenizer"), model_max_length=64)
    return pipeline("token-classification", model=model.eval(), tokenizer=tokenizer, aggregation_strategy="simple")


def test_predict_gives_ner_entities_as_the_token_classification_pipeline_does(tmp_path, tiny_bert):  # noqa: F811
    """CoNLL test sentences as raw texts (and one with punctuation against its words and an accent),
    3 a chunk, as JSON Lines: each text's entities (text, type, character offsets, score) those of
    transformers' pipeline with aggregation_strategy="simple" on the promoted weights."""
    (tmp_path / "src").mkdir()
    source, test = conll_slices(tmp_path / "src")
    cfg, _ = promoted(tmp_path, tiny_bert, {"type": "token_classification"}, source)
    sharpened(model_dir(cfg) / "model" / "model.safetensors")
    labels = json.loads((model_dir(cfg) / "labels.json").read_text())
    texts = [" ".join(w for w, _ in s) for s in test] + ["Müller, of Berlin's FC, met Ann (UN) in New York."]
    pd.DataFrame({"text": texts, "n": range(len(texts))}).to_csv(tmp_path / "new.csv", index=False)
    done = predict_file(model_dir(cfg), tmp_path / "new.csv", tmp_path / "out.jsonl", chunk_rows=3, precision="fp32")
    out = pd.read_json(tmp_path / "out.jsonl", lines=True)
    assert done["rows"] == len(texts) and list(out["text"]) == texts and list(out["n"]) == list(range(len(texts)))
    pipe = transformers_ner(model_dir(cfg), labels)
    theirs = pipe(texts)
    found = [e for row in out["entities"] for e in row]
    assert len(found) > 20 and len({e["type"] for e in found}) > 1  # plenty of entities to compare
    assert np.ptp([e["score"] for e in found]) > 0.1 and any(" " in e["text"] for e in found)  # some span words
    for text, ours, want in zip(texts, out["entities"], theirs, strict=True):
        assert [(e["type"], e["start"], e["end"]) for e in ours] == [(e["entity_group"], e["start"], e["end"]) for e in want]
        assert [e["text"] for e in ours] == [text[e["start"] : e["end"]] for e in want]
        np.testing.assert_allclose([e["score"] for e in ours], [float(e["score"]) for e in want], atol=1e-5)

    predict_file(model_dir(cfg), tmp_path / "new.csv", tmp_path / "out.parquet", chunk_rows=3, precision="fp32")
    table = [list(map(dict, e)) for e in pd.read_parquet(tmp_path / "out.parquet")["entities"]]
    spans = [[(e["text"], e["type"], e["start"], e["end"]) for e in row] for row in table]
    assert spans == [[(e["text"], e["type"], e["start"], e["end"]) for e in row] for row in out["entities"]]
    np.testing.assert_allclose([e["score"] for row in table for e in row],  # JSON Lines: 10 significant digits
                               [e["score"] for row in out["entities"] for e in row], atol=1e-9)
