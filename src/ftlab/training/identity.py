"""What a trained cell depends on, and nothing else: its identity.

A cell's result is decided by the task, the model, the training settings that change the result
(not threads, paths or logging), its method's own params (after the search), the cell itself
(method, seed, train size), the prepared data's bytes and the code that trains it (as code:
``ftlab.core.source``). It is the one rule of "up to date" for both drivers: the plan stage writes every
cell's identity to a file that is the only dep of the cell's dvc.yaml train stage, ``train``
records it in the run directory (``identity.json``), the Prefect flow skips a cell only when the
recorded identity equals the current one, and checkpoints are keyed by it, so an interrupted run
resumes after an unrelated edit (a report setting, threads) but never on other data.

The flow used to compare the whole config dump instead: it ignored the data (new rows, same params:
"finished run found, skipping", then ``dvc commit`` recorded the stale run as current), and it
retrained every cell after an edit of ``report.*`` or ``monitor.*``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ftlab.core.config import Cell
from ftlab.core.source import code_digest
from ftlab.data.prepare import PREPARED_FILES
from ftlab.learning.config import Config

# train.* settings that do not change what is learned: where files go, how often it logs, cores
NOT_RESULT = frozenset({"threads", "output_dir", "checkpoint_dir", "logging_steps"})


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def data_digest(data_dir: Path) -> str:
    """The prepared splits' and label names' bytes (what training reads)."""
    return _digest([Path(data_dir) / name for name in (*PREPARED_FILES, "labels.json")])


def cell_identity(cfg: Config, cell: Cell, data_dir: Path | None = None) -> dict[str, Any]:
    """Everything ``cell``'s result depends on. ``cfg`` is the config the cell trains with (the
    method's searched params applied)."""
    train = {k: v for k, v in cfg.train.model_dump(mode="json").items() if k not in NOT_RESULT}
    return {
        "cell": {"method": cell.method, "seed": cell.seed, "train_size": cell.train_size},
        "task": cfg.task.model_dump(mode="json"),
        "model": cfg.model.model_dump(mode="json"),
        "train": train,
        "method_params": cfg.params_for(cell.method).model_dump(mode="json"),
        "data_sha256": data_digest(data_dir or cfg.data.prepared_dir),
        "code_sha256": code_digest("train"),
    }


def cell_key(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def recorded_key(run_dir: Path) -> str | None:
    """The identity key a finished run directory records (None: unfinished, or from before identities)."""
    path = Path(run_dir) / "identity.json"
    if not (Path(run_dir) / "metrics.json").is_file() or not path.is_file():
        return None
    return cell_key(json.loads(path.read_text()))


def with_race(identity: dict[str, Any], race: dict | None) -> dict[str, Any]:
    """The identity a finished run records: in a race, a cell's result also depends on where the race
    stopped it (``ftlab.race``'s record of the cell), so both drivers retrain it when that changes."""
    return identity if race is None else {**identity, "race": {"status": race["status"], "stop_step": race["stop_step"]}}
