"""``ftlab predict`` for bi-encoded pairs (issue 34): models exported as sentence-transformers
directories (layout ``bi-encoder``), trained briefly with a tiny BERT on slices of the real STS-B and
RTE files. Every input row comes back in input order, across chunks, with the score on the training
scale (or the class and its probabilities) that the run gave the same pair, and that
sentence-transformers alone gives on the export."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ftlab import stages
from ftlab.learning.tasks import DataError
from ftlab.learning.tasks.biencoder import cosine_to_score
from ftlab.serving.gate import rescore
from ftlab.serving.predict import predict_file
from ftlab.serving.promote import model_dir
from tests.test_bi_encoder import run, trained


def promoted(root, tiny_model, dataset: str) -> tuple:
    cfg = trained(root, tiny_model, dataset, ["full"], **{"method_params.full.lr": 1e-3})
    stages.compare(cfg)
    meta = stages.promote(cfg)
    assert meta["layout"] == "bi-encoder" and meta["text_pair_column"] == "sentence2"
    return cfg, meta, pd.read_parquet(run(cfg, "full") / "predictions.parquet")


def embeddings(path, a: list[str], b: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Both texts of each pair encoded by sentence-transformers alone on the export."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(path), device="cpu")
    return model.encode(a, convert_to_tensor=True), model.encode(b, convert_to_tensor=True)


def test_predict_scores_bi_encoded_regression_pairs_on_the_training_scale(tmp_path, tiny_model):
    """STS-B test pairs in reverse order, under other column names, 7 rows a chunk: each row kept with its
    own columns, its score the run's and the cosine of sentence-transformers' embeddings on the score
    range ftlab.json records (1e-5); a blank second text in a later chunk fails by line, the earlier
    output untouched."""
    cfg, meta, expected = promoted(tmp_path, tiny_model, "stsb")
    rows = expected.iloc[::-1].reset_index(drop=True)
    new = pd.DataFrame({"id": range(len(rows)), "first": rows["text"], "second": rows["text_pair"]})
    new.to_csv(tmp_path / "new.csv", index=False)
    done = predict_file(model_dir(cfg), tmp_path / "new.csv", tmp_path / "out.csv", text_column="first",
                        text_pair_column="second", chunk_rows=7, precision="fp32")
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert done["rows"] == len(rows) == 48 and list(out.columns) == ["id", "first", "second", "prediction"]
    pd.testing.assert_frame_equal(out[["id", "first", "second"]], new)
    # scores that differ by row, by far more than 1e-5: a row out of place would show (a random tiny BERT's
    # mean-pooled embeddings share one direction, so the cosines sit close to 1)
    assert np.ptp(out["prediction"]) > 0.01
    np.testing.assert_allclose(out["prediction"], rows["prediction"], atol=1e-5)
    u, v = embeddings(model_dir(cfg), list(new["first"]), list(new["second"]))
    cosine = torch.nn.functional.cosine_similarity(u, v).numpy()
    np.testing.assert_allclose(out["prediction"], cosine_to_score(cosine, *meta["score_range"]), atol=1e-5)

    before = (tmp_path / "out.csv").read_bytes()
    new.loc[30, "second"] = " "
    new.to_csv(tmp_path / "new.csv", index=False)
    with pytest.raises(DataError, match=r"1 empty or missing text\(s\) in column 'second' cannot be scored: row 30 \(line 32\)"):
        predict_file(model_dir(cfg), tmp_path / "new.csv", tmp_path / "out.csv", text_column="first",
                     text_pair_column="second", chunk_rows=7, precision="fp32")
    assert (tmp_path / "out.csv").read_bytes() == before
    with pytest.raises(DataError, match=r"--max-new-tokens 4: this model does not generate \(regression \(bi-encoder pair\)\)"):
        predict_file(model_dir(cfg), tmp_path / "new.csv", tmp_path / "out.csv", max_new_tokens=4)


def test_predict_gives_a_bi_encoded_pair_classifier_class_and_probabilities(tmp_path, tiny_model):
    """RTE in the training columns (the second text's column by default), as JSON Lines, 16 a chunk: the
    class the run predicted and its probabilities, equal to the softmax of the exported head on
    sentence-transformers' embeddings (u, v, |u - v|); the promotion gate re-scores the export the same."""
    from safetensors.torch import load_file

    cfg, meta, expected = promoted(tmp_path, tiny_model, "rte")
    labels = ["entailment", "not_entailment"]
    assert meta["labels"] == labels
    expected[["text", "text_pair"]].set_axis(["sentence1", "sentence2"], axis=1).to_json(
        tmp_path / "new.jsonl", orient="records", lines=True)
    predict_file(model_dir(cfg), tmp_path / "new.jsonl", tmp_path / "out.parquet", chunk_rows=16, precision="fp32")
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert list(out["sentence2"]) == list(expected["text_pair"])
    assert list(out["prediction"]) == [labels[i] for i in expected["prediction"]]
    probs = out[[f"prob_{n}" for n in labels]].to_numpy()
    assert np.ptp(probs[:, 0]) > 0.001  # probabilities that differ by row
    np.testing.assert_allclose(probs, expected[[f"prob_{n}" for n in labels]], atol=1e-5)
    u, v = embeddings(model_dir(cfg), list(out["sentence1"]), list(out["sentence2"]))
    head = load_file(str(model_dir(cfg) / "pair_classifier.safetensors"))
    theirs = (torch.cat([u, v, (u - v).abs()], -1) @ head["weight"].T + head["bias"]).softmax(-1).numpy()
    np.testing.assert_allclose(probs, theirs, atol=1e-5)
    assert list(out["prediction"]) == [labels[i] for i in theirs.argmax(1)]

    # the promotion gate re-scores this champion from its export as its run scored the test pairs
    test = pd.read_parquet(cfg.data.prepared_dir / "test.parquet")
    champion, why_not = rescore(model_dir(cfg), test, labels, cfg.task_type())
    assert champion is not None, why_not
    np.testing.assert_allclose(champion[[f"prob_{n}" for n in labels]], expected[[f"prob_{n}" for n in labels]], atol=1e-5)
    assert list(champion["prediction"]) == list(expected["prediction"])
