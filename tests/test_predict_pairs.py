"""``ftlab predict`` for cross-encoded pairs and regression (issue 34): models promoted as run files
(layout ``ftlab``), trained briefly with a tiny BERT on slices of the real STS-B and RTE files. Every
input row comes back in input order, across chunks, with the score (or class and probabilities) the
run gave the same pair, and that transformers alone gives on the promoted weights."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ftlab import stages
from ftlab.learning.tasks import DataError
from ftlab.serving.predict import predict_file
from ftlab.serving.promote import model_dir
from tests.test_bi_encoder import run, trained

CROSS = {"task.pair_encoding": "cross", "model.pooling": "cls", "method_params.full.lr": 1e-3}


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, tiny_model) -> str:
    """The tiny BERT with weights drawn 10 times wider (std 0.2): at BERT's std 0.02 its [CLS] vector is
    nearly the same for every text, and so is a briefly trained head's output (a spread of 3e-4 on
    STS-B), which would leave a 1e-5 comparison of scores little to tell apart."""
    import shutil
    from pathlib import Path

    from transformers import BertConfig, BertModel, set_seed

    set_seed(0)
    out = tmp_path_factory.mktemp("wide-tiny-bert")
    config = BertConfig.from_pretrained(tiny_model)
    config.initializer_range = 0.2
    BertModel(config).save_pretrained(str(out))
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(Path(tiny_model) / name, out / name)
    return str(out)


def promoted(root, tiny_model, dataset: str):
    cfg = trained(root, tiny_model, dataset, ["full"], **CROSS)
    stages.compare(cfg)
    meta = stages.promote(cfg)
    assert meta["layout"] == "ftlab" and meta["text_pair_column"] == "sentence2" and meta["pair_encoding"] == "cross"
    return cfg, pd.read_parquet(run(cfg, "full") / "predictions.parquet")


@torch.inference_mode()
def transformers_outputs(model_path, a: list[str], b: list[str]) -> np.ndarray:
    """The promoted weights through transformers alone, one pair at a time (no padding, no batching)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(model_path / "model")).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_path / "tokenizer"))
    return np.stack([model(**tokenizer(x, y, truncation=True, max_length=64, return_tensors="pt")).logits[0].numpy()
                     for x, y in zip(a, b, strict=True)])


def test_predict_scores_cross_encoded_regression_pairs_in_input_order(tmp_path, tiny_bert):
    """STS-B test pairs in reverse order, under other column names, 7 rows a chunk: each row kept with its
    own columns, its score the run's and transformers' (1e-5); a blank second text in a later chunk
    fails by line, and the earlier output stays."""
    cfg, expected = promoted(tmp_path, tiny_bert, "stsb")
    rows = expected.iloc[::-1].reset_index(drop=True)
    new = pd.DataFrame({"id": range(len(rows)), "first": rows["text"], "second": rows["text_pair"]})
    new.to_csv(tmp_path / "new.csv", index=False)
    done = predict_file(model_dir(cfg), tmp_path / "new.csv", tmp_path / "out.csv", text_column="first",
                        text_pair_column="second", chunk_rows=7, precision="fp32")
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert done["rows"] == len(rows) == 48 and list(out.columns) == ["id", "first", "second", "prediction"]
    pd.testing.assert_frame_equal(out[["id", "first", "second"]], new)
    assert np.ptp(out["prediction"]) > 0.1  # scores that differ by row: a row out of place would show
    np.testing.assert_allclose(out["prediction"], rows["prediction"], atol=1e-5)
    own = transformers_outputs(model_dir(cfg), list(new["first"]), list(new["second"]))
    np.testing.assert_allclose(out["prediction"], own[:, 0], atol=1e-5)
    from typer.testing import CliRunner

    from ftlab.cli import app

    done = CliRunner().invoke(app, ["predict", "--model", str(model_dir(cfg)), "--input", str(tmp_path / "new.csv"),
                                    "--output", str(tmp_path / "cli.csv"), "--text-column", "first",
                                    "--text-pair-column", "second", "--precision", "fp32"])
    assert done.exit_code == 0, done.output
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cli.csv", keep_default_na=False), out)

    before = (tmp_path / "out.csv").read_bytes()
    new.loc[30, "second"] = " "
    new.to_csv(tmp_path / "new.csv", index=False)
    with pytest.raises(DataError, match=r"1 empty or missing text\(s\) in column 'second' cannot be scored: row 30 \(line 32\)"):
        predict_file(model_dir(cfg), tmp_path / "new.csv", tmp_path / "out.csv", text_column="first",
                     text_pair_column="second", chunk_rows=7, precision="fp32")
    assert (tmp_path / "out.csv").read_bytes() == before


def test_predict_gives_a_cross_encoded_pair_classifier_class_and_probabilities(tmp_path, tiny_bert):
    """RTE in the training columns (the second text's column by default, as trained): the class the run
    predicted and its probabilities, equal to transformers' softmax on the promoted weights."""
    cfg, expected = promoted(tmp_path, tiny_bert, "rte")
    labels = ["entailment", "not_entailment"]
    expected[["text", "text_pair"]].set_axis(["sentence1", "sentence2"], axis=1).to_json(
        tmp_path / "new.jsonl", orient="records", lines=True)
    predict_file(model_dir(cfg), tmp_path / "new.jsonl", tmp_path / "out.parquet", chunk_rows=16,
                 precision="fp32")
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert list(out["sentence2"]) == list(expected["text_pair"])
    assert list(out["prediction"]) == [labels[i] for i in expected["prediction"]]
    probs = out[[f"prob_{n}" for n in labels]].to_numpy()
    assert np.ptp(probs[:, 0]) > 0.01  # probabilities that differ by row
    np.testing.assert_allclose(probs, expected[[f"prob_{n}" for n in labels]], atol=1e-5)
    own = torch.tensor(transformers_outputs(model_dir(cfg), list(out["sentence1"]), list(out["sentence2"])))
    np.testing.assert_allclose(probs, own.softmax(-1).numpy(), atol=1e-5)
    np.testing.assert_allclose(out["confidence"], probs.max(1), atol=1e-7)
