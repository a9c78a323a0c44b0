"""The pipeline's commands: each stage of dvc.yaml one by one, the whole pipeline as the Prefect
flow, and the listings of tasks and methods."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from ftlab.cli.common import PARAMS, SET, app, console, fail, load, parse_size, run_stage, say, set_values, stage_config

SEED = typer.Option(None, "--seed", help="training seed (default: every seed in params `seeds`)")
SIZE = typer.Option(None, "--train-size", help="training examples, a number or 'all' (default: every params `train_sizes`)")
METHOD = typer.Option(None, "--method", "-m", help="method (default: every method in params `methods`)")


@app.command()
def tasks() -> None:
    """List the tasks (what is learned, set by `task.type` in params.yaml), one line each."""
    from ftlab.learning.tasks import TASKS

    for name, task in TASKS.items():
        typer.echo(f"{name:22} {task.summary}")


@app.command()
def methods() -> None:
    """List the fine-tuning methods, one line each on what they train."""
    from ftlab.learning.methods import METHODS

    table = Table("method", "trains", "default lr", box=None)
    for name, method in METHODS.items():
        table.add_row(Text(name), Text(method.summary), f"{method.Params().lr:g}")
    console.print(table)


@app.command()
def prepare(params: Path | None = PARAMS, set_: list[str] | None = SET) -> None:
    """Load the configured data source, split it and write Parquet splits to data.prepared_dir."""
    run_stage("prepare", params, set_)


@app.command()
def validate(params: Path | None = PARAMS, set_: list[str] | None = SET) -> None:
    """Run the Great Expectations suite on the prepared splits; exit 1 naming each failure."""
    from ftlab.core.builtins import SPLITS
    from ftlab.core.layout import validation_dir

    result = run_stage("validate", params, set_)
    splits = [s for s in SPLITS if any(c["split"] == s for c in result["checks"])]
    docs = validation_dir(stage_config(params, set_)) / "data_docs" / "index.html"
    say(("validation passed", "green"), f": all {len(result['checks'])} checks on {', '.join(splits)}; Data Docs: {docs}")


def _cells(cfg, method: str | None, seed: int | None, size: str | None):
    """The config's grid of cells, narrowed to the given method, seed and train size."""
    from ftlab.core.params import ConfigError
    from ftlab.learning.methods import METHODS

    if method is not None and method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    return cfg.cells(method, seed, parse_size(size))


@app.command()
def search(method: str | None = METHOD, params: Path | None = PARAMS, set_: list[str] | None = SET) -> None:
    """Search each method's own hyperparameters on the validation split (when search.enabled)."""
    from ftlab.core.params import ConfigError
    from ftlab.learning.methods import METHODS

    cfg = stage_config(params, set_)
    if method is not None and method not in METHODS:
        fail(ConfigError(f"unknown method {method!r}; known: {', '.join(METHODS)}"))
    for name in [method] if method else cfg.methods:
        result = run_stage("search", params, set_, name)
        say(f"{name}: " + (f"chose {result['chosen']}" if result["enabled"] else "search disabled, defaults apply"))


@app.command()
def plan(params: Path | None = PARAMS, set_: list[str] | None = SET) -> None:
    """Write each cell's identity (data, code, result-changing params): a cell retrains when it changes."""
    identities = run_stage("plan", params, set_)
    say(f"planned {len(identities)} cell(s) in {stage_config(params, set_).report.dir / 'plan'}")


@app.command()
def race(params: Path | None = PARAMS, set_: list[str] | None = SET) -> None:
    """Race the methods on the validation split (when race.enabled): the clearly worse stop at a rung."""
    decisions = run_stage("race", params, set_)
    if not decisions["enabled"]:
        say("race disabled: every cell trains its whole budget")
        return
    for size in decisions["sizes"]:
        out = [f"{r['method']} (rung {rung['rung']}, {r['reason']})" for rung in size["rungs"]
               for r in rung["methods"] if r["decision"] == "eliminated"]
        say(f"train size {size['train_size']}: ", (", ".join(size["survivors"]), "green"), " go on; eliminated: "
            + (", ".join(out) or "none"))


@app.command()
def train(
    method: str | None = typer.Option(None, "--method", "-m", help="method name (see `ftlab methods`); default: every method listed in params `methods`"),
    seed: int | None = SEED,
    train_size: str | None = SIZE,
    params: Path | None = PARAMS,
    set_: list[str] | None = SET,
    out: Path | None = typer.Option(None, help="run directory of a single run (default: <train.output_dir>/<method>/s<seed>-n<size>)"),
) -> None:
    """Fine-tune a method (per seed and train size) and write its run directory (weights, metrics, history, predictions)."""
    from ftlab.core.params import ConfigError
    from ftlab.data.prepare import DataError

    try:  # a bad option or param fails here, before torch and transformers take seconds to import
        cfg = load(params, set_)
        cells = _cells(cfg, method, seed, train_size)
        if out is not None and len(cells) != 1:
            raise ConfigError(f"--out names one run directory but this selects {len(cells)} runs: give --method, --seed and --train-size")
    except (ConfigError, ValueError, OSError) as e:
        fail(e)
    from ftlab import stages
    from ftlab.core.record import RunRecord
    from ftlab.progress import progress
    from ftlab.stages import StageFailed
    from ftlab.training.trainer import TrainingDiverged

    try:
        for cell in cells:
            metrics = stages.train(cfg, cell.method, cell.seed, cell.train_size, out=out)
            if not metrics:  # another rank of a DDP run (torchrun): rank 0 reports
                continue
            record = RunRecord.model_validate(metrics)
            quality = ", ".join(f"{m.label} {record.quality[m.name]:.4f}" for m in cfg.task_type().metrics)
            say((f"{cell.method} {cell.name}", "green"),
                f": {quality}, {record.trainable_percent:.3g}% trainable, {record.cost.train_seconds:.1f}s")
            if out is None and (cfg.report.dir / "plan").is_dir():  # a cell of the planned grid
                say(progress(cfg).line())
    except (ConfigError, DataError, ValueError, OSError, MemoryError, TrainingDiverged, StageFailed) as e:
        fail(e)


@app.command()
def check(method: str | None = METHOD, seed: int | None = SEED, train_size: str | None = SIZE,
          params: Path | None = PARAMS, set_: list[str] | None = SET) -> None:
    """Overfitting and drift checks (train/val gap, rising val loss, Evidently report) of finished runs."""
    cfg = stage_config(params, set_)
    try:
        cells = _cells(cfg, method, seed, train_size)
    except ValueError as e:
        fail(e)
    for cell in cells:
        result = run_stage("check", params, set_, cell.method, cell.seed, cell.train_size)
        say(f"{cell.method} {cell.name}: ", (result["verdict"], "bold"), " " + "; ".join(result["reasons"]))


@app.command()
def compare(params: Path | None = PARAMS, set_: list[str] | None = SET) -> None:
    """Write the comparison report (markdown, HTML, JSON, PNG plots) over the configured methods."""
    result = run_stage("compare", params, set_)
    say(result["recommendation"]["text"])


@app.command()
def promote(
    method: str | None = typer.Option(None, "--method", "-m", help="method to promote (default: the comparison's recommendation)"),
    seed: int | None = typer.Option(None, "--seed", help="seed (default: the one with the best validation score)"),
    train_size: str | None = typer.Option(None, "--train-size", metavar="N|all", help="train size (default: the largest compared)"),
    model: Path | None = typer.Option(None, "--model", metavar="DIR",
                                      help="where to write the model (default: <promote.dir>/<promote.name> of the params: models/ftlab-model)"),
    params: Path | None = PARAMS,
    set_: list[str] | None = SET,
) -> None:
    """Package the recommended cell (or the one named) as a standalone model directory."""
    try:
        size = parse_size(train_size)
    except typer.BadParameter as e:
        fail(e)
    meta = run_stage("promote", params, set_, method, seed, size, model=model)
    decision = meta["promotion"]
    pick = decision["challenger"]
    if decision["promoted"]:
        say(f"promoted {pick['method']} s{pick['seed']}-n{pick['train_size']} as a {meta['layout']} model, "
            f"version {meta['version']}: {decision['reason']}")
    else:
        say(("refused:", "bold yellow"), f" {pick['method']} s{pick['seed']}-n{pick['train_size']} is "
            f"{decision['reason']}; version {meta.get('version')} ({meta.get('method')}) keeps serving")


@app.command()
def pipeline(params: Path = typer.Option(Path("params.yaml"), "--params", "-p", help="params file"),
             set_: list[str] | None = SET) -> None:
    """Run the whole pipeline as the Prefect flow `finetune_pipeline` (same stages as dvc.yaml)."""
    import os

    from ftlab.core.runlock import ProjectBusy, pipeline_paths, refuse_if_busy

    # a bad param, or a run that holds the project, fails here, in a second or two, not after
    # Prefect's temporary server has started
    cfg = stage_config(params, set_)
    try:
        refuse_if_busy(pipeline_paths(cfg))
    except ProjectBusy as e:
        fail(e)
    overrides = set_values(set_)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # the temporary server gets 20 s to start by default: a busy machine (a CI runner beside other
    # jobs) needed more, and the flow failed before it began
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "flows"))
    try:
        from finetune import finetune_pipeline
    except ImportError:
        fail(ImportError("flows/finetune.py not found: run `ftlab pipeline` from an ftlab checkout"))
    state = finetune_pipeline(str(params), overrides=overrides or None, return_state=True)
    if not state.is_completed():
        fail(RuntimeError(f"pipeline {state.name}: {state.message}"))
