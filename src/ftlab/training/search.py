"""Per-method hyperparameter search on the validation split, so that methods meet at their own best.

One shared learning rate favours whichever method it happens to suit: prompt tuning wants rates
hundreds of times those of full fine-tuning. Each method therefore gets its own Optuna study over
its own space: the learning rate around its default (``search.lr_factors`` times it) and the
method's ``search_space`` knobs (LoRA's rank, the number of virtual tokens), each with its default.

- **Sampler**: when the whole grid (every factor × every knob value) fits in ``search.trials``, a
  ``GridSampler`` tries all of it: a model of the space buys nothing when every point is tried.
  Otherwise a ``TPESampler``: the learning rate log-uniform between the smallest and largest factor
  (× the default lr), the knobs categorical, the defaults enqueued as the first trial so they are
  always tried. Both are seeded with the first of ``seeds``; TPE is reseeded at each trial with the
  count of finished ones, so a study resumed after a kill draws what the uninterrupted one would have.
- **Pruning**: successive halving over training steps (``ftlab.training.pruning`` reports each
  evaluation): at ``search.first_rung`` steps, then ``search.eta`` times further at each next rung,
  a trial goes on only while it is among the best 1/eta of the trials that reached that rung.
- **Resuming**: the study is kept in ``<report.dir>/search/<method>.optuna.log`` (Optuna's journal
  file) under a name keyed by what the trials depend on (``study_key``): a rerun with the same
  settings, data and code runs only the trials missing, none when the study is complete; anything
  else starts a new study in place of the old one.

The trial with the best validation score among those that finished wins. The test split is never
looked at.
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from ftlab.core.config import Cell
from ftlab.core.layout import study_file
from ftlab.core.source import code_digest
from ftlab.learning.config import Config
from ftlab.learning.methods import get_method
from ftlab.training.identity import cell_identity, cell_key

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
TPE_STARTUP = 5  # random draws before TPE models the space: half Optuna's 10, as budgets here are 4-20 trials


def space(cfg: Config, method: str) -> dict[str, list[Any]]:
    """Each searched setting's candidates, sorted: the learning rate times each factor, and the method's
    own knobs; every list holds the current default, so the defaults are always a point of the space."""
    params = cfg.params_for(method)
    lrs = {float(f"{params.lr * f:.3g}") for f in cfg.search.lr_factors} | {params.lr}
    knobs = get_method(method).search_space
    return {"lr": sorted(lrs), **{k: sorted({*v, getattr(params, k)}) for k, v in knobs.items()}}


def defaults(cfg: Config, method: str) -> dict[str, Any]:
    """The method's current value of each searched setting: the first trial."""
    params = cfg.params_for(method)
    return {k: getattr(params, k) for k in space(cfg, method)}


def sampler_kind(cfg: Config, method: str) -> Literal["grid", "tpe"]:
    """grid when every point of the space fits in ``search.trials``, else TPE."""
    return "grid" if math.prod(map(len, space(cfg, method).values())) <= cfg.search.trials else "tpe"


def budget(cfg: Config, method: str) -> int:
    """How many trials the study finishes: the whole grid, or ``search.trials``."""
    if sampler_kind(cfg, method) == "grid":
        return math.prod(map(len, space(cfg, method).values()))
    return cfg.search.trials


def pruner_settings(cfg: Config) -> dict[str, Any] | None:
    """Successive halving's rungs in steps (None: pruning off)."""
    if not cfg.search.prune:
        return None
    return {"kind": "successive_halving", "first_rung": cfg.search.first_rung or cfg.train.eval_steps,
            "eta": cfg.search.eta}


def study_key(cfg: Config, method: str, data_dir: Path | None = None) -> str:
    """A digest of everything the trials' results depend on: the trial cell's identity (task, model,
    result-changing train settings, the method's params, seed, train size, data), the search stage's
    code, the space, the sampler and the rungs. Not ``search.trials`` under TPE: more trials go on
    with the study, fewer take its first ones, as a fresh study would have run them."""
    identity = cell_identity(cfg, Cell(method, cfg.seeds[0], cfg.search.train_size), data_dir)
    identity["code_sha256"] = code_digest("search")
    return cell_key({**identity, "search": {"space": space(cfg, method), "sampler": sampler_kind(cfg, method),
                                            "pruner": pruner_settings(cfg)}})


def _suggest(trial: optuna.Trial, candidates: dict[str, list[Any]], kind: str) -> dict[str, Any]:
    lrs = candidates["lr"]
    lr = trial.suggest_categorical("lr", lrs) if kind == "grid" else trial.suggest_float("lr", lrs[0], lrs[-1], log=True)
    return {"lr": lr, **{k: trial.suggest_categorical(k, v) for k, v in candidates.items() if k != "lr"}}


def _open_study(cfg: Config, method: str, data_dir: Path | None) -> optuna.Study:
    """The method's study for the current settings, loaded when the file holds it; a file that holds
    another (settings, data or code changed since) is replaced, never resumed."""
    path, name = study_file(cfg, method), f"{method}-{study_key(cfg, method, data_dir)}"
    path.parent.mkdir(parents=True, exist_ok=True)
    stale = path.is_file() and optuna.get_all_study_names(JournalStorage(JournalFileBackend(str(path)))) != [name]
    if stale:
        log.info("%s: search settings, data or code changed since %s was written: a new study", method, path)
        path.unlink()
    rungs = pruner_settings(cfg)
    pruner = (optuna.pruners.SuccessiveHalvingPruner(min_resource=rungs["first_rung"], reduction_factor=rungs["eta"])
              if rungs else optuna.pruners.NopPruner())
    sampler = (optuna.samplers.GridSampler(space(cfg, method), seed=cfg.seeds[0])
               if sampler_kind(cfg, method) == "grid" else None)
    from ftlab.training.train import best_metric  # torch: loaded when a study opens, not to list a space

    study = optuna.create_study(storage=JournalStorage(JournalFileBackend(str(path))), study_name=name,
                                direction="maximize" if best_metric(cfg).higher_is_better else "minimize",
                                sampler=sampler, pruner=pruner, load_if_exists=True)
    if not study.trials and sampler is None:
        study.enqueue_trial(defaults(cfg, method))
    _requeue_unfinished(study, space(cfg, method))
    return study


def _requeue_unfinished(study: optuna.Study, candidates: dict[str, list[Any]]) -> None:
    """Trials a killed run left running count as failed; the settings of every failed trial that no
    finished or queued trial has are queued again, so a resumed study tries the points it would have."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL)
    trials = study.get_trials(deepcopy=False)
    have = [t.params for t in trials if t.state in (*FINISHED, TrialState.WAITING)]
    for t in trials:
        if t.state == TrialState.FAIL and set(t.params) == set(candidates) and t.params not in have:
            log.info("trial %d did not finish: queued again %s", t.number, t.params)
            study.enqueue_trial(t.params)
            have.append(t.params)


def _objective(cfg: Config, method: str, data_dir: Path | None, candidates: dict[str, list[Any]], kind: str):
    from ftlab.training.pruning import ReportToTrial
    from ftlab.training.train import best_metric, train

    metric = best_metric(cfg)

    def objective(trial: optuna.Trial) -> float:
        values = _suggest(trial, candidates, kind)
        log.info("%s: search trial %d %s", method, trial.number, values)
        trial_cfg = cfg.with_method_params(method, values).model_copy(
            update={"train": cfg.train.model_copy(update={"checkpoint_dir": None})})
        with tempfile.TemporaryDirectory(prefix="ftlab-search-") as tmp:
            metrics = train(trial_cfg, method, Path(tmp) / "run", data_dir, seed=cfg.seeds[0],
                            train_size=cfg.search.train_size,
                            callbacks=[ReportToTrial(trial, metric.name, metric.higher_is_better)])
        trial.set_user_attr("steps", metrics["steps"])
        trial.set_user_attr("train_seconds", metrics["cost"]["train_seconds"])
        return metrics["best_validation"]["value"]

    return objective


def _trial_record(t: optuna.trial.FrozenTrial, names: list[str]) -> dict[str, Any]:
    """A finished trial as the search JSON lists it; a pruned one with its last reported score and step."""
    pruned = t.state == TrialState.PRUNED
    return {"number": t.number, "params": {k: t.params[k] for k in names}, "state": "pruned" if pruned else "complete",
            "validation": t.intermediate_values[t.last_step] if pruned and t.last_step is not None else t.value,
            "steps": t.user_attrs.get("steps"), "train_seconds": t.user_attrs.get("train_seconds")}


def search(cfg: Config, method: str, data_dir: Path | None = None) -> dict:
    """Run the missing trials of ``method``'s study; the chosen setting with every trial's validation score."""
    from ftlab.training.train import best_metric

    study, kind, candidates, n = _open_study(cfg, method, data_dir), sampler_kind(cfg, method), space(cfg, method), budget(cfg, method)
    objective = _objective(cfg, method, data_dir, candidates, kind)
    while (done := len(study.get_trials(deepcopy=False, states=FINISHED))) < n:
        if kind == "tpe":  # reseeded by the finished count: a resumed study draws as an uninterrupted one
            study.sampler = optuna.samplers.TPESampler(seed=cfg.seeds[0] + done, n_startup_trials=TPE_STARTUP)
        study.optimize(objective, n_trials=1)
    finished = sorted(study.get_trials(deepcopy=False, states=FINISHED), key=lambda t: t.number)[:n]
    trials = [_trial_record(t, list(candidates)) for t in finished]
    complete = [t for t in trials if t["state"] == "complete"]
    if not complete:
        raise RuntimeError(f"{method}: every trial of study {study.study_name} in {study_file(cfg, method)} was pruned; "
                           "delete that file to search again")
    sign = 1 if best_metric(cfg).higher_is_better else -1
    best = max(complete, key=lambda t: sign * t["validation"])
    return {"method": method, "enabled": True, "metric": f"validation_{best_metric(cfg).name}", "chosen": best["params"],
            "train_size": cfg.search.train_size, "seed": cfg.seeds[0], "sampler": kind,
            "pruner": pruner_settings(cfg), "pruned": len(trials) - len(complete),
            "study": {"file": study_file(cfg, method).name, "name": study.study_name}, "trials": trials}
