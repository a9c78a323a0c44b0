"""What a trained cell depends on, and nothing else: its identity.

A cell's result is decided by the task, the model, the training settings that change the result
(not threads, paths or logging), its method's own params (after the search), the cell itself
(method, seed, train size), the prepared data's bytes and the code that trains it. ``train``
records the identity in the run directory (``identity.json``); the Prefect flow skips a cell only
when the recorded identity equals the current one, and checkpoints are keyed by it, so an
interrupted run resumes after an unrelated edit (a report setting, threads) but never on other data.

The flow used to compare the whole config dump instead: it ignored the data (new rows, same params:
"finished run found, skipping", then ``dvc commit`` recorded the stale run as current), and it
retrained every cell after an edit of ``report.*`` or ``monitor.*``.
"""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path
from typing import Any

from ftlab.config import Cell, Config

# train.* settings that do not change what is learned: where files go, how often it logs, cores
NOT_RESULT = frozenset({"threads", "output_dir", "checkpoint_dir", "logging_steps"})
SRC = Path(__file__).resolve().parent
TRAINING_MODULE = "ftlab.train"


def module_file(name: str) -> Path | None:
    """The source file of ftlab module ``name`` (a package's __init__.py), or None outside ftlab."""
    base = SRC.parent / Path(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def code_files(module: str = TRAINING_MODULE) -> list[Path]:
    """The ftlab source files ``module`` imports, directly or not, function-level imports included
    (read from the source, so a new module counts as soon as training imports it)."""
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        path = module_file(name)
        if path is None or name in seen:
            continue
        seen[name] = path
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            for found in names:
                parts = found.split(".")
                todo += [".".join(parts[:i]) for i in range(1, len(parts) + 1) if parts[0] == "ftlab"]
    return sorted(set(seen.values()))


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def data_digest(data_dir: Path) -> str:
    """The prepared splits' and label names' bytes (what training reads)."""
    from ftlab.data import PREPARED_FILES

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
        "code_sha256": _digest(code_files()),
    }


def cell_key(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def recorded_key(run_dir: Path) -> str | None:
    """The identity key a finished run directory records (None: unfinished, or from before identities)."""
    path = Path(run_dir) / "identity.json"
    if not (Path(run_dir) / "metrics.json").is_file() or not path.is_file():
        return None
    return cell_key(json.loads(path.read_text()))
