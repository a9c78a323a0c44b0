"""Every promoted model is kept: ``<promote.dir>/history/<promote.name>/v<N>/``, and one command rolls back.

``ftlab promote`` numbers each promotion (``version`` in ``ftlab.json``) and copies the new model into
the history beside the serving directory; ``versions.json`` there lists every version with the
gate's decision. ``ftlab rollback`` puts an earlier version back in place, byte for byte (the
previous one by default). The history is an output of dvc.yaml's promote stage, so DVC's cache and
remote keep it too (files shared between versions are stored once).
"""

from __future__ import annotations

import json
import logging
import shutil
from datetime import datetime, timezone
from pathlib import Path

from ftlab.core.escape import md_text
from ftlab.core.io import atomic_dir, write_json
from ftlab.learning.config import Config

log = logging.getLogger(__name__)


class RollbackError(ValueError):
    """Nothing to roll back to: no history, or the version asked for is not in it."""


def history_dir(cfg: Config) -> Path:
    return cfg.promote.dir / "history" / cfg.promote.name


def promotion_file(cfg: Config) -> Path:
    """The last gate decision: ``<report.dir>/promotion.json``."""
    return cfg.report.dir / "promotion.json"


def log_file(cfg: Config) -> Path:
    return history_dir(cfg) / "versions.json"


def read_log(cfg: Config) -> list[dict]:
    return json.loads(log_file(cfg).read_text()) if log_file(cfg).is_file() else []


def kept(cfg: Config) -> list[int]:
    """The versions in the history, oldest first."""
    root = history_dir(cfg)
    return sorted(int(p.name[1:]) for p in root.glob("v*") if p.is_dir() and p.name[1:].isdigit()) if root.is_dir() else []


def serving(model_dir: Path) -> dict | None:
    """The serving model's ``ftlab.json``, or None when nothing is promoted there."""
    meta = model_dir / "ftlab.json"
    return json.loads(meta.read_text()) if meta.is_file() else None


def next_version(cfg: Config, model_dir: Path) -> int:
    current = serving(model_dir) or {}
    return 1 + max([*kept(cfg), int(current.get("version") or 0)])


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _copy(model_dir: Path, cfg: Config, version: int) -> None:
    with atomic_dir(history_dir(cfg) / f"v{version}") as tmp:
        shutil.copytree(model_dir, tmp, dirs_exist_ok=True)


def archive(cfg: Config, model_dir: Path) -> None:
    """Before a promotion replaces it: the serving model into the history, if it is not there yet (one
    promoted before versions were kept, or put there by hand, is kept as v0)."""
    meta = serving(model_dir)
    if meta is not None and int(meta.get("version") or 0) not in kept(cfg):
        _copy(model_dir, cfg, int(meta.get("version") or 0))


def keep(cfg: Config, model_dir: Path, decision: dict) -> None:
    """Copy the model just promoted into the history and log it."""
    version = serving(model_dir)["version"]  # type: ignore[index]
    _copy(model_dir, cfg, version)
    entry = {"event": "re-exported" if decision.get("same_run") else "promoted", "version": version, "at": now(),
             **{k: decision.get(k) for k in ("challenger", "gate", "reason")}}
    write_json(log_file(cfg), [*read_log(cfg), entry])


def keep_serving(cfg: Config, model_dir: Path, decision: dict) -> dict:
    """A refused challenger: the decision is recorded, nothing under ``model_dir`` changes; returns the
    serving model's ftlab.json with the decision."""
    if not log_file(cfg).is_file():
        write_json(log_file(cfg), [])  # the history is a DVC output: it exists even before a version does
    write_json(promotion_file(cfg), decision)
    log.warning("promote: the challenger %s is refused, %s keeps serving: %s", decision["challenger"], model_dir,
                decision["reason"])
    return (serving(model_dir) or {}) | {"promotion": decision}


def rollback(cfg: Config, model_dir: Path, to: int | None = None) -> dict:
    """Serve version ``to`` (default: the newest one before the serving version) again; returns its ftlab.json."""
    current = (serving(model_dir) or {}).get("version")
    versions = kept(cfg)
    if current is None and not versions:
        raise RollbackError(f"{history_dir(cfg)}: nothing has been promoted yet, so there is no version to roll back "
                            "to; `make run` (or `dvc repro`) promotes one, `ftlab promote` after `ftlab compare`")
    if to is None:
        earlier = [v for v in versions if current is None or v < current]
        if not earlier:
            raise RollbackError(f"{history_dir(cfg)}: no version before the serving one (v{current}) to roll back to; "
                                f"kept: {[f'v{v}' for v in versions]}")
        to = earlier[-1]
    if to not in versions:
        raise RollbackError(f"{history_dir(cfg)}: no version v{to}; kept: {[f'v{v}' for v in versions]}")
    with atomic_dir(model_dir) as tmp:
        shutil.copytree(history_dir(cfg) / f"v{to}", tmp, dirs_exist_ok=True)
    write_json(log_file(cfg), [*read_log(cfg), {"event": "rolled back", "version": to, "from": current, "at": now()}])
    log.info("rolled back %s from %s to v%s", model_dir, "an unversioned model" if current is None else f"v{current}", to)
    return serving(model_dir)  # type: ignore[return-value]


def card_note(decision: dict) -> str:
    """The model card's section on how this model won its place."""
    lines = ["", "## Promotion", "", f"Version {decision['version']}. Gate `{decision['gate']}` "
             f"(tolerance {decision['tolerance']}): {md_text(decision['reason'])}."]
    found = decision.get("comparisons") or {}
    if found:
        lines += ["", f"| rows | test rows | challenger | champion | gain | {round(100 * decision['level'])}% interval | p | verdict |",
                  "|---|---:|---:|---:|---:|---|---:|---|"]
        lines += [f"| {md_text(name)} | {c['rows']} | {c['challenger']:.4f} | {c['champion']:.4f} | {c['gain']:+.4f} | "
                  f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] | {c['p_value']:.3g} | {c['verdict']} |"
                  for name, c in found.items()]
    return "\n".join(lines) + "\n"
