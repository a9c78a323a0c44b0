"""The pipeline's stages: one function each, files in, files out.

``dvc.yaml`` runs them through the ``ftlab`` CLI and the Prefect flow calls them as tasks; neither
driver holds stage logic of its own. A comparison is a grid of cells, method × seed × train
size (``Config.cells``), and where each stage reads and writes follows from the config:

    ingest <file>           -> <data.batches_dir>/<NNNN>-<name>/ (a batch of new rows; not a dvc.yaml stage)
    prepare                 -> <data.prepared_dir>/   (data.source and the labelled batches)
    validate                -> <report.dir>/validation/          (stops the pipeline on bad data)
    search <method>         -> <report.dir>/search/<method>.json (hyperparameters; a stub when disabled)
    plan                    -> <report.dir>/plan/<method>/s<seed>-n<size>.json (each cell's identity)
    race                    -> <report.dir>/race/ (which methods stop at which rung; stubs when disabled)
    train <cell>            -> <train.output_dir>/<method>/s<seed>-n<size>/
    check <cell>            -> <report.dir>/checks/<method>/s<seed>-n<size>/
    compare                 -> <report.dir>/comparison.{md,html,json} + PNG plots
    promote                 -> <promote.dir>/<promote.name>/     (the recommended cell, standalone)
    monitor <file>          -> <monitor.out_dir>/monitor.{html,json} (drift verdict on new data)
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ftlab.core.config import Cell
from ftlab.core.io import atomic_dir, write_json
from ftlab.core.layout import checks_dir, plan_file, race_decisions, race_file, run_dir, search_file, validation_dir
from ftlab.learning.config import Config

if TYPE_CHECKING:
    from ftlab.data.ingest import Answers
    from ftlab.serving.monitor import InputColumns


log = logging.getLogger(__name__)


class StageFailed(RuntimeError):
    """A stage refused to pass its result on: invalid data, or a check verdict set to fail."""


def cell(cfg: Config, method: str, seed: int | None = None, train_size: int | Literal["all"] = "all") -> Cell:
    """The cell of ``method`` at ``seed`` (default: the first of ``seeds``) and ``train_size``."""
    return Cell(method, cfg.seeds[0] if seed is None else seed, train_size)


RAW_DIR = Path("data/raw")  # what dvc.yaml's prepare stage watches


def prepare(cfg: Config) -> Path:
    from ftlab.data.prepare import prepare as prepare_data

    source = cfg.data.source
    files = list(source.values()) if isinstance(source, dict) else [] if source.startswith(("builtin:", "hub:")) else [source]
    # realpath, not Path.resolve: a loop of symbolic links is the reader's error to word, not a RuntimeError here
    unseen = [str(f) for f in files if not Path(os.path.realpath(f)).is_relative_to(RAW_DIR.resolve())]
    if unseen and Path("dvc.yaml").is_file():
        log.warning("dvc repro does not see edits to %s: dvc.yaml's prepare stage watches %s/; move the "
                    "data there to have an edit re-prepare the data and retrain", ", ".join(unseen), RAW_DIR)
    return prepare_data(cfg, cfg.data.prepared_dir)


def ingest(cfg: Config, path: Path, name: str | None = None, answers: Answers | None = None) -> dict:
    """Keep a batch of new rows under ``data.batches_dir`` (labelled: it joins training at the next
    prepare); in a DVC project the batch is ``dvc add``-ed, versioned like the rest of the data.
    ``answers``: the user's answers to what the batch may raise (new classes, duplicate or unlabelled
    rows; see :class:`ftlab.data.ingest.Answers`). One ingest at a time, from numbering to ``dvc add``;
    a batch an earlier ingest renamed but was stopped before adding is added first."""
    from ftlab.data.batches import batch_dirs, locked
    from ftlab.data.ingest import Answers, ingest as keep

    with locked(cfg.data.batches_dir):
        for batch in batch_dirs(cfg.data.batches_dir):
            if not batch.with_name(f"{batch.name}.dvc").is_file() and _dvc_add(batch):
                log.warning("%s was ingested but not versioned (its ingest was stopped): dvc add-ed now; commit "
                            "%s.dvc", batch, batch)
        info = keep(Path(path), cfg.task_type(), cfg.data, cfg.seed, name, answers or Answers())
        if _dvc_add(Path(info["dir"])):
            info["dvc_file"] = f"{info['dir']}.dvc"
    return info


def _dvc_add(batch: Path) -> bool:
    """``dvc add`` the batch in the DVC project holding it; False outside one, or where DVC refuses it
    (e.g. a batches_dir that .dvcignore leaves out: the batch is kept, unversioned, with a warning)."""
    batch = batch.resolve()
    project = next((d for d in batch.parents if (d / ".dvc").is_dir()), None)
    if project is None:
        return False
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(project)) as repo:
            repo.add(str(batch))
    except DvcException as e:
        log.warning("%s is kept but not versioned by DVC (%s: %s)", batch, type(e).__name__, e)
        return False
    return True


def validate(cfg: Config) -> dict:
    """Validate the prepared splits, first preparing them if they are missing or were made from other
    params or files (never a stale copy); raises StageFailed naming each failed expectation."""
    from ftlab.data.prepare import ensure_prepared
    from ftlab.data.validation import ValidationFailed, raise_on_failure, validate as run_suite

    result = run_suite(ensure_prepared(cfg), cfg.validation, validation_dir(cfg), cfg.task_type())
    try:
        raise_on_failure(result)
    except ValidationFailed as e:
        raise StageFailed(str(e)) from None
    return result


def with_threads(cfg: Config, threads: int) -> Config:
    """``cfg`` with train.threads set, for runs that share the cores with concurrent runs."""
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"threads": threads})})


def search(cfg: Config, method: str) -> dict:
    """Search ``method``'s hyperparameters when ``search.enabled``; otherwise record that defaults apply."""
    if cfg.search.enabled:
        from ftlab.training.search import search as run_search

        result = run_search(cfg, method, cfg.data.prepared_dir)
    else:
        result = {"method": method, "enabled": False, "chosen": {}}
    write_json(search_file(cfg, method), result)
    return result


def tuned(cfg: Config, method: str) -> Config:
    """``cfg`` with ``method``'s searched hyperparameters applied (unchanged when search is off)."""
    if not cfg.search.enabled:
        return cfg
    path = search_file(cfg, method)
    if not path.is_file():
        raise StageFailed(f"search.enabled is true but {path} is missing: run `ftlab search -m {method}` first")
    return cfg.with_method_params(method, json.loads(path.read_text())["chosen"])


def plan(cfg: Config) -> dict[Cell, dict]:
    """Each cell's identity (``ftlab.training.identity``: data, code, result-changing params), one file per
    cell. dvc.yaml's train stage depends on its cell's file and on nothing else, so DVC retrains a
    cell exactly when the flow would (the flow compares the same identity with the one its run
    recorded): this stage re-runs on any edit of params or code, and rewrites unchanged files byte
    for byte, which leaves their cells up to date."""
    from ftlab.training.identity import cell_identity

    identities = {c: cell_identity(tuned(cfg, c.method), c) for c in cfg.cells()}
    with atomic_dir(cfg.report.dir / "plan") as tmp:
        for c, identity in identities.items():
            write_json(tmp / plan_file(cfg, c).relative_to(cfg.report.dir / "plan"), identity)
    return identities


def race(cfg: Config) -> dict:
    """Race the methods on validation (``ftlab.race``) when race.enabled; otherwise record that every
    cell trains its whole budget."""
    from ftlab.race import run

    return run(cfg, {m: tuned(cfg, m) for m in cfg.methods})


def race_record(cfg: Config, c: Cell) -> dict | None:
    """The race's record of cell ``c`` (None when race.enabled is false); StageFailed when the race
    has not decided for the current settings."""
    if not cfg.race.enabled:
        return None
    path = race_file(cfg, c)
    record = json.loads(path.read_text()) if path.is_file() else {}
    if not record.get("enabled"):
        raise StageFailed(f"race.enabled is true but {path} holds no race decision: run `ftlab race` first")
    return record


def train(cfg: Config, method: str, seed: int | None = None, train_size: int | Literal["all"] = "all",
          out: Path | None = None) -> dict:
    """Fine-tune one cell on the prepared data (in a race: to where the race's record stops it)."""
    from ftlab.training.train import train as run_train

    c = cell(cfg, method, seed, train_size)
    return run_train(tuned(cfg, method), method, out or run_dir(cfg, c), data_dir=cfg.data.prepared_dir,
                     seed=c.seed, train_size=c.train_size, race=race_record(cfg, c))


def check(cfg: Config, method: str, seed: int | None = None, train_size: int | Literal["all"] = "all") -> dict:
    """Overfitting and drift checks of one finished cell; raises ChecksFailed per checks.fail_on."""
    from ftlab.analysis.checks import ChecksFailed, check_run, enforce

    c = cell(cfg, method, seed, train_size)
    result = check_run(run_dir(cfg, c), cfg.checks, checks_dir(cfg, c))
    try:
        enforce(result, cfg.checks.fail_on)
    except ChecksFailed as e:
        raise StageFailed(str(e)) from None
    return result


def compare(cfg: Config) -> dict:
    """The comparison report over every cell of the config, with the task's baselines; in a race, the
    cells it eliminated are left out of the statistics and the pick and shown in their own table."""
    from ftlab.analysis.baselines import baselines
    from ftlab.analysis.race import eliminated_rows
    from ftlab.analysis.report import compare as write_report

    cells, eliminated = cfg.cells(), None
    if cfg.race.enabled:
        out = [c for c in cells if (race_record(cfg, c) or {}).get("status") == "eliminated"]
        eliminated = eliminated_rows(json.loads(race_decisions(cfg).read_text()), [run_dir(cfg, c) for c in out])
        cells = [c for c in cells if c not in out]
    checks: list[Path | None] = [checks_dir(cfg, c) for c in cells]
    searches = [search_file(cfg, m) for m in cfg.methods if search_file(cfg, m).is_file()]
    return write_report([run_dir(cfg, c) for c in cells], checks, cfg.report, cfg.report.dir, searches,
                        cfg.task_type(), baselines(cfg), eliminated)


def promote(cfg: Config, method: str | None = None, seed: int | None = None,
            train_size: int | Literal["all"] | None = None) -> dict:
    """Package the recommended cell (or the one named) as a standalone model directory."""
    from ftlab.serving.promote import promote as run_promote

    return run_promote(cfg, method, seed, train_size)


def rollback(cfg: Config, to: int | None = None) -> dict:
    """Serve an earlier promoted version again (default: the one before the serving one)."""
    from ftlab.serving.promote import model_dir
    from ftlab.serving.versions import rollback as restore

    return restore(cfg, model_dir(cfg), to)


def monitor(cfg: Config, input_path: Path | None = None, columns: InputColumns | None = None) -> dict:
    """Compare new data (default: monitor.input) with the promoted model's training reference."""
    from ftlab.serving.monitor import InputColumns, monitor as run_monitor
    from ftlab.serving.promote import model_dir

    return run_monitor(model_dir(cfg), input_path or cfg.monitor.input, cfg.monitor, cfg.monitor.out_dir,
                       columns or InputColumns())

