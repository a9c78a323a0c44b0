"""User strings that are markup: a label, a text and a column name that would run script in every
HTML page and markdown file ftlab writes, if any writer let them through (ftlab.core.escape)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from ftlab import ci, stages
from ftlab.core.io import write_text
from tests.conftest import toy_reviews

LABEL = "</script><script>alert(3)</script>"
TEXT = "<script>alert(1)</script><img src=x onerror=alert(2)> `|` [a](javascript:alert(4)) <!--"
COLUMN = '<script>alert(5)</script>"'
BENIGN = ("pos", "a plain sentence", "text")
SUFFIXES = (".html", ".md", ".xml")  # the Label Studio config is markup too


class Active(HTMLParser):
    """Counts what a browser would run: script elements and on* event-handler attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts = self.handlers = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"
        self.handlers += sum(name.startswith("on") for name, _ in attrs)


def active(markup: str) -> tuple[int, int]:
    parser = Active()
    parser.feed(markup)
    parser.close()
    return parser.scripts, parser.handlers


def body(markdown: str) -> str:
    """The markdown without its YAML front matter: the model card's metadata, data that tools read (the
    labels exact, quoted by yaml.safe_dump), which a hub or GitHub shows escaped."""
    return markdown.split("---\n", 2)[2] if markdown.startswith("---\n") else markdown


def rendered(markdown: str) -> str:
    """The markdown as a permissive renderer shows it: raw HTML passed through."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)


def run_project(root: Path, tiny_model: str, label: str, text: str, column: str) -> dict[str, Path]:
    """Every stage that writes HTML or markdown, on toy reviews whose "pos" label is ``label``, every
    third text carrying ``text``, the text column named ``column``; returns the files by relative path."""
    from ftlab.learning.config import load_config

    rows = toy_reviews(160).replace({"label": {"pos": label}})
    rows["text"] = [f"{t} {text}" if i % 3 == 0 else t for i, t in enumerate(rows["text"])]
    rows = rows.rename(columns={"text": column})
    rows.to_csv(root / "reviews.csv", index=False)
    rows.head(40).to_csv(root / "incoming.csv", index=False)
    cfg = load_config(None, {
        "data.source": str(root / "reviews.csv"), "task.text_column": column, "model.name": tiny_model,
        "methods": ["full"], "data.prepared_dir": str(root / "data"), "train.batch_size": 16, "train.eval_steps": 1,
        "train.max_steps": 2, "train.train_eval_samples": 32, "train.threads": 1, "train.checkpoint_dir": None,
        "train.precision": "fp32", "train.output_dir": str(root / "runs"), "report.dir": str(root / "reports"),
        "promote.dir": str(root / "models"), "monitor.out_dir": str(root / "monitor"), "monitor.queue_size": 5})
    stages.prepare(cfg)
    stages.validate(cfg)
    stages.train(cfg, "full")
    stages.check(cfg, "full")
    stages.compare(cfg)
    stages.promote(cfg)
    stages.monitor(cfg, root / "incoming.csv")
    rows.head(40).drop(columns="label").to_csv(root / "unlabelled.csv", index=False)
    cfg = cfg.model_copy(update={"monitor": cfg.monitor.model_copy(update={"out_dir": root / "queue"})})
    stages.monitor(cfg, root / "unlabelled.csv")  # no labels: the labelling queue's Label Studio config
    current = json.loads((root / "reports/comparison.json").read_text())
    gate = ci.gate(current, None, cfg, {"promoted": False, "gate": "paired", "reason": f"labels [{label!r}]"})
    diff = f"| Path | Metric | Old | New |\n|---|---|---|---|\n| metrics.json | f1_{label} | - | 0.5 |"
    write_text(root / "ci/summary.md", ci.summary("main", "abc123", gate, current, None, diff, None))
    write_text(root / "ci/failed.md", ci.failed_summary("main", "abc123", f"ERROR: label {label!r}\n```\n{text}"))
    # Data Docs file each validation under its time: the same name in both runs without it
    return {re.sub(r"/\d{8}T\d{6}\.\d+Z/", "/TIME/", p.relative_to(root).as_posix()): p
            for p in sorted(root.rglob("*")) if p.suffix in SUFFIXES}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model) -> tuple[dict[str, Path], dict[str, Path]]:
    benign = run_project(tmp_path_factory.mktemp("benign"), tiny_model, *BENIGN)
    hostile = run_project(tmp_path_factory.mktemp("hostile"), tiny_model, LABEL, TEXT, COLUMN)
    return benign, hostile


def test_no_user_string_runs_in_any_html_or_markdown_file(runs):
    benign, hostile = runs
    assert benign.keys() == hostile.keys()
    expected = {"reports/checks/full/s42-nall/drift.html", "monitor/monitor.html", "reports/comparison.html",
                "reports/comparison.md", "models/ftlab-model/README.md", "reports/validation/data_docs/index.html",
                "queue/labelling_queue.label-studio.xml", "ci/summary.md", "ci/failed.md"}
    assert expected <= hostile.keys(), sorted(hostile)
    unsafe = {}
    for name, path in hostile.items():
        page = path.read_text(encoding="utf-8")
        if name.endswith(".md"):
            outside_fences = re.sub(r"(?ms)^(`{3,})[^\n]*\n.*?^\1$", "", body(page))
            found = active(rendered(body(page))), "<script" in outside_fences.lower()
            expected = (0, 0), False
        else:  # as many script elements and handlers as the benign run's page: Evidently's and GX's own
            found, expected = active(page), active(benign[name].read_text(encoding="utf-8"))
        if found != expected:
            unsafe[name] = f"{found}, benign {expected}"
    assert not unsafe, "unsafe:\n" + "\n".join(f"{k}: {v}" for k, v in unsafe.items())


def test_the_strings_are_shown_not_lost(runs):
    _, hostile = runs
    card = hostile["models/ftlab-model/README.md"].read_text()
    assert sorted(yaml.safe_load(card.split("---\n")[1])["ftlab"]["labels"]) == sorted(["neg", LABEL])  # exact
    assert "&lt;/script&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in body(card)  # the text escaped
    drift = hostile["reports/checks/full/s42-nall/drift.html"].read_text()
    assert json.dumps(LABEL).replace("<", "\\u003c") in drift  # the same string to the page's JavaScript


def pickled(model: Path, to: Path) -> Path:
    """A copy of ``model`` whose weights are a pickle (``pytorch_model.bin``) instead of safetensors."""
    import shutil

    import torch
    from safetensors.torch import load_file

    shutil.copytree(model, to)
    for weights in to.rglob("model.safetensors"):
        torch.save(load_file(str(weights)), weights.with_name("pytorch_model.bin"))
        weights.unlink()
    return to


def test_pickle_weights_are_refused_wherever_a_model_directory_is_read(runs, tiny_model, tmp_path):
    from ftlab.core.config import MonitorConfig
    from ftlab.learning.config import load_config
    from ftlab.learning.modeling import UnsafeWeights, build_model
    from ftlab.serving.monitor import monitor
    from ftlab.serving.predict import predict_file

    _, hostile = runs
    promoted = pickled(hostile["models/ftlab-model/README.md"].parent, tmp_path / "promoted")
    incoming = hostile["monitor/monitor.html"].parents[1] / "incoming.csv"
    refused = r"model directory \(.*promoted\): its weights are pytorch_model\.bin, pickle files.* safetensors only"
    with pytest.raises(UnsafeWeights, match=refused):
        predict_file(promoted, incoming, tmp_path / "scored.csv")
    with pytest.raises(UnsafeWeights, match=refused):
        monitor(promoted, incoming, MonitorConfig(), tmp_path / "monitor")
    assert not (tmp_path / "scored.csv").exists() and not (tmp_path / "monitor" / "monitor.html").exists()
    base = pickled(Path(tiny_model), tmp_path / "base")  # model.name pointing at a local directory
    with pytest.raises(UnsafeWeights, match=r"model.name '.*base' \(.*base\): its weights are pytorch_model\.bin"):
        build_model(load_config(None, {"model.name": str(base)}).model, ["neg", "pos"])
