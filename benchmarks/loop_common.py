"""What the measured loops (``loop_reddit.py``, ``loop_conll.py``) share: one config of a loop working
directory, the timed steps run through ftlab's stage functions (what ``ftlab <command>`` runs), and
the monitor's and the gate's answers cut down to what the result files report."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

from ftlab import stages  # noqa: E402
from ftlab.learning.config import Config, load_config  # noqa: E402
from ftlab.serving.promote import model_dir  # noqa: E402

log = logging.getLogger("loop")
DATA = ROOT.parent / "shared" / "data"
RESULTS = HERE / "results"


def fresh(work: Path) -> Path:
    """An empty working directory: every loop starts with nothing promoted and no batch ingested."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


def loop_config(root: Path, values: dict[str, Any]) -> Config:
    """The task's ``values`` over what every loop keeps the same: one method (full fine-tuning), one
    epoch, no checkpoints, and every output (prepared data, batches, runs, reports, models) under ``root``."""
    return load_config(None, {
        "data.batches_dir": str(root / "batches"), "data.prepared_dir": str(root / "data"), "methods": ["full"],
        "train.epochs": 1, "train.checkpoint_dir": None, "train.output_dir": str(root / "runs"),
        "report.dir": str(root / "reports"), "promote.dir": str(root / "models"),
        "monitor.out_dir": str(root / "monitor"), **values})


def timed(steps: dict[str, float], name: str, fn: Any, *args: Any) -> Any:
    """``fn(*args)``, its wall time kept in ``steps`` under ``name``."""
    start = time.perf_counter()
    out = fn(*args)
    steps[name] = round(time.perf_counter() - start, 1)
    log.info("%s: %.1f s", name, steps[name])
    return out


def retrain(cfg: Config) -> dict:
    """prepare → train → compare → promote, as ``dvc repro`` runs them: promote gates the new pick
    against the model serving (none on the first run)."""
    stages.prepare(cfg)
    stages.train(cfg, "full")
    stages.compare(cfg)
    return stages.promote(cfg)


def serving_version(cfg: Config) -> int:
    return int(json.loads((model_dir(cfg) / "ftlab.json").read_text())["version"])


def gate_summary(decision: dict | None) -> dict | None:
    """The gate's decision as promote recorded it (None: the first promotion, judged by no gate)."""
    return None if decision is None else {k: decision.get(k) for k in ("promoted", "gate", "reason", "comparisons")}


def monitor_summary(drift: dict) -> dict:
    """The verdict and each signal's score, threshold and decision; a set signal (an NER model's entity
    types, a multi-label model's labels) keeps each name's rate on both sides."""
    signals = {}
    for name, s in drift["signals"].items():
        signals[name] = {"score": round(s["score"], 4), "threshold": s["threshold"], "drifted": s.get("drifted")}
        if "rates" in s:
            signals[name]["rates"] = {k: {side: round(v, 4) for side, v in r.items()} for k, r in s["rates"].items()}
        if "current" in s and "reference" in s:
            signals[name].update(reference=round(s["reference"], 4), current=round(s["current"], 4))
    return {"verdict": drift["verdict"], "rows": drift["rows"]["current"], "signals": signals}


def write_results(name: str, result: dict, markdown: str) -> None:
    """``results/<name>.json`` and ``.md``; the table is logged too."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown)
    log.info("\n%s", markdown)
