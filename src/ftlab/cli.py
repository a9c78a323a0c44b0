"""The ``ftlab`` command line: the pipeline's stages one by one, the whole pipeline, method listing, merging."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

# plain click help: typer's rich panels label every flag, --help included, as <bool>
app = typer.Typer(help="Fine-tune a transformer with several methods and measure which to pick.", no_args_is_help=True,
                  rich_markup_mode=None)
console = Console()

PARAMS = typer.Option(None, "--params", "-p", metavar="FILE",
                      help="params file (default: params.yaml if present, else built-in defaults)")
SET = typer.Option(None, "--set", "-S", metavar="KEY=VALUE",
                   help="override one value, e.g. -S method_params.lora.r=16 (YAML value); repeatable")
# the operations commands (promote, predict, monitor) share these
MODEL = typer.Option(None, "--model", metavar="DIR",
                     help="the promoted model directory (default: <promote.dir>/<promote.name> of the params: models/ftlab-model)")
TEXT_COLUMN = typer.Option(None, "--text-column", metavar="NAME",
                           help="column of texts (default: the model's training text column; column 1 with --no-header)")
HEADER = typer.Option(True, "--header/--no-header",
                      help="CSV/TSV: the first line names the columns (default); --no-header: it is a row, and the "
                           "columns are numbered 1, 2, ...")


@app.callback()
def _setup(verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging")) -> None:
    # SIGTERM (a scheduler stopping the job) unwinds like Ctrl-C: temporary outputs are removed
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
    )
    for noisy in ("httpx", "datasets", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _set_values(overrides: list[str] | None) -> dict:
    """The ``-S KEY=VALUE`` items as {dotted key: YAML value}."""
    import yaml

    from ftlab.config import ConfigError

    parsed = {}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set expects KEY=VALUE, got {item!r}")
        try:
            parsed[key] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item}: the value is not valid YAML ({e}); quote it: {key}='\"...\"'") from None
    return parsed


def _config(params: Path | None, overrides: list[str] | None, model: Path | None = None, settings: dict | None = None):
    """The config from ``params`` with the -S overrides and the ``settings`` of a command's own
    options; ``model`` (an operations command's --model) sets promote.dir and promote.name, so that
    promote writes and predict and monitor read there."""
    from ftlab.config import load_config

    if params is None and Path("params.yaml").is_file():
        params = Path("params.yaml")
    model_dir = {} if model is None else {"promote.dir": str(model.parent), "promote.name": model.name}
    return load_config(params, {**(settings or {}), **model_dir, **_set_values(overrides)})


def say(*parts: str | tuple[str, str]) -> None:
    """Print one line verbatim: no Rich markup or emoji codes read from it, no wrapping. A part is
    plain text or (text, style)."""
    console.print(Text.assemble(*parts), soft_wrap=True, highlight=False)


def _fail(e: Exception) -> NoReturn:
    logging.getLogger(__name__).debug("where it failed:", exc_info=e)  # the traceback with -v
    say(("error:", "bold red"), f" {e}")
    raise typer.Exit(1)


@app.command()
def tasks() -> None:
    """List the tasks (what is learned, set by `task.type` in params.yaml), one line each."""
    from ftlab.tasks import TASKS

    for name, task in TASKS.items():
        typer.echo(f"{name:22} {task.summary}")


@app.command()
def methods() -> None:
    """List the fine-tuning methods, one line each on what they train."""
    from ftlab.methods import METHODS

    table = Table("method", "trains", "default lr", box=None)
    for name, method in METHODS.items():
        table.add_row(Text(name), Text(method.summary), f"{method.Params().lr:g}")
    console.print(table)


@app.command()
def prepare(params: Path | None = PARAMS, set_: list[str] | None = SET) -> None:
    """Load the configured data source, split it and write Parquet splits to data.prepared_dir."""
    _stage("prepare", params, set_)


@app.command()
def validate(params: Path | None = PARAMS, set_: list[str] | None = SET) -> None:
    """Run the Great Expectations suite on the prepared splits; exit 1 naming each failure."""
    from ftlab.config import SPLITS
    from ftlab.stages import validation_dir

    result = _stage("validate", params, set_)
    splits = [s for s in SPLITS if any(c["split"] == s for c in result["checks"])]
    docs = validation_dir(_stage_config(params, set_)) / "data_docs" / "index.html"
    say(("validation passed", "green"), f": {len(result['checks'])} of {len(result['checks'])} checks on "
        f"{', '.join(splits)}; Data Docs: {docs}")


SEED = typer.Option(None, "--seed", help="training seed (default: every seed in params `seeds`)")
SIZE = typer.Option(None, "--train-size", help="training examples, a number or 'all' (default: every params `train_sizes`)")


def _size(value: str | None):
    if value is None or value == "all":
        return value
    if not value.isdigit() or int(value) < 1:
        raise typer.BadParameter(f"--train-size must be a positive number or 'all', got {value!r}")
    return int(value)


def _cells(cfg, method: str | None, seed: int | None, size: str | None):
    """The config's cells, narrowed to the given method, seed and train size."""
    from ftlab.config import Cell, ConfigError
    from ftlab.methods import METHODS

    if method is not None and method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    return [Cell(m, s, n) for m in ([method] if method else cfg.methods)
            for n in ([_size(size)] if size else cfg.train_sizes) for s in ([seed] if seed is not None else cfg.seeds)]


@app.command()
def search(
    method: str | None = typer.Option(None, "--method", "-m", help="method (default: every method in params `methods`)"),
    params: Path | None = PARAMS,
    set_: list[str] | None = SET,
) -> None:
    """Search each method's own hyperparameters on the validation split (when search.enabled)."""
    from ftlab.config import ConfigError
    from ftlab.methods import METHODS

    cfg = _stage_config(params, set_)
    if method is not None and method not in METHODS:
        _fail(ConfigError(f"unknown method {method!r}; known: {', '.join(METHODS)}"))
    for name in [method] if method else cfg.methods:
        result = _stage("search", params, set_, name)
        say(f"{name}: " + (f"chose {result['chosen']}" if result["enabled"] else "search disabled, defaults apply"))


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
    from ftlab.config import ConfigError
    from ftlab.data import DataError

    try:  # a bad option or param fails here, before torch and transformers take seconds to import
        cfg = _config(params, set_)
        cells = _cells(cfg, method, seed, train_size)
        if out is not None and len(cells) != 1:
            raise ConfigError(f"--out names one run directory but this selects {len(cells)} runs: give --method, --seed and --train-size")
    except (ConfigError, ValueError, OSError) as e:
        _fail(e)
    from ftlab import stages
    from ftlab.metrics import flat
    from ftlab.stages import StageFailed
    from ftlab.trainer import TrainingDiverged

    try:
        for cell in cells:
            metrics = stages.train(cfg, cell.method, cell.seed, cell.train_size, out=out)
            if not metrics:  # another rank of a DDP run (torchrun): rank 0 reports
                continue
            metrics = flat(metrics)
            task = cfg.task_type()
            quality = ", ".join(f"{m.label} {metrics[m.name]:.4f}" for m in task.metrics)
            say((f"{cell.method} {cell.name}", "green"),
                f": {quality}, {metrics['trainable_percent']:.3g}% trainable, {metrics['train_seconds']:.1f}s")
    except (ConfigError, DataError, ValueError, OSError, MemoryError, TrainingDiverged, StageFailed) as e:
        _fail(e)


@app.command()
def check(
    method: str | None = typer.Option(None, "--method", "-m", help="method (default: every method in params `methods`)"),
    seed: int | None = SEED,
    train_size: str | None = SIZE,
    params: Path | None = PARAMS,
    set_: list[str] | None = SET,
) -> None:
    """Overfitting and drift checks (train/val gap, rising val loss, Evidently report) of finished runs."""
    cfg = _stage_config(params, set_)
    try:
        cells = _cells(cfg, method, seed, train_size)
    except ValueError as e:
        _fail(e)
    for cell in cells:
        result = _stage("check", params, set_, cell.method, cell.seed, cell.train_size)
        say(f"{cell.method} {cell.name}: ", (result["verdict"], "bold"), " " + "; ".join(result["reasons"]))


@app.command()
def compare(params: Path | None = PARAMS, set_: list[str] | None = SET) -> None:
    """Write the comparison report (markdown, HTML, JSON, PNG plots) over the configured methods."""
    result = _stage("compare", params, set_)
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
        size = _size(train_size)
    except typer.BadParameter as e:
        _fail(e)
    meta = _stage("promote", params, set_, method, seed, size, model=model)
    say(f"promoted {meta['method']} s{meta['seed']}-n{meta['train_size']} as a {meta['layout']} model")


@app.command()
def predict(
    input_: Path = typer.Option(..., "--input", "-i", metavar="FILE", help="CSV, TSV, JSONL or Parquet file to score"),
    output: Path | None = typer.Option(None, "--output", "-o", metavar="FILE",
                                       help="where to write rows + predictions (default: <input>.predictions.<ext>)"),
    model: Path | None = MODEL,
    text_column: str | None = TEXT_COLUMN,
    header: bool = HEADER,
    batch_size: int = typer.Option(128, min=1, metavar="N", help="texts per forward pass"),
    precision: str = typer.Option("auto", metavar="auto|bf16|fp32", help="bf16 autocast; auto: where the hardware has it natively"),
    params: Path | None = PARAMS,
    set_: list[str] | None = SET,
) -> None:
    """Score a file with a promoted model: each input row + prediction, confidence and per-class probabilities."""
    from ftlab.data import DataError
    from ftlab.predict import predict_file
    from ftlab.promote import model_dir

    if precision not in ("auto", "bf16", "fp32"):
        _fail(typer.BadParameter(f"--precision must be auto, bf16 or fp32, got {precision!r}"))
    cfg = _stage_config(params, set_, model)
    output = output or input_.with_name(f"{input_.stem}.predictions{input_.suffix}")
    try:
        result = predict_file(model_dir(cfg), input_, output, text_column, batch_size, precision, header=header)
    except (DataError, ValueError, OSError) as e:
        _fail(e)
    say(f"scored {result['rows']} rows -> {output}")


@app.command()
def monitor(
    input_: Path | None = typer.Option(None, "--input", "-i", metavar="PATH",
                                       help="new data: a file or a directory of files (default: monitor.input)"),
    model: Path | None = MODEL,
    text_column: str | None = TEXT_COLUMN,
    label_column: str | None = typer.Option(None, "--label-column", metavar="NAME",
                                            help="column of labels: label names or ids 0..K-1; with it, accuracy is "
                                                 "monitored too (default: the model's training label column if present; "
                                                 "column 2 with --no-header)"),
    header: bool = HEADER,
    out_dir: Path | None = typer.Option(None, "--out-dir", metavar="DIR",
                                        help="where monitor.html and monitor.json go (default: monitor.out_dir)"),
    params: Path | None = PARAMS,
    set_: list[str] | None = SET,
    fail_on_drift: bool = typer.Option(False, "--fail-on-drift", help="exit 3 on the verdict drift (for CI and cron)"),
) -> None:
    """Drift of new data against the promoted model's training reference: HTML report + JSON verdict."""
    from ftlab.monitor import InputColumns

    settings = {"monitor.out_dir": str(out_dir)} if out_dir is not None else None
    columns = InputColumns(text_column, label_column, header)
    result = _stage("monitor", params, set_, input_, columns, model=model, settings=settings)
    say((result["verdict"], "bold"), ": " + "; ".join(result["reasons"]))
    if result.get("next_step"):
        say(f"next step: {result['next_step']}")
    if result.get("report"):
        say(f"report: {result['report']}")
    if fail_on_drift and result["verdict"] == "drift":
        raise typer.Exit(3)


@app.command()
def pipeline(params: Path = typer.Option(Path("params.yaml"), "--params", "-p", help="params file"),
             set_: list[str] | None = SET) -> None:
    """Run the whole pipeline as the Prefect flow `finetune_pipeline` (same stages as dvc.yaml)."""
    import os

    # a bad param fails here, in a second, not after Prefect's temporary server has started
    _stage_config(params, set_)
    overrides = _set_values(set_)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # the temporary server gets 20 s to start by default: a busy machine (a CI runner beside other
    # jobs) needed more, and the flow failed before it began
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "flows"))
    try:
        from finetune import finetune_pipeline
    except ImportError:
        _fail(ImportError("flows/finetune.py not found: run `ftlab pipeline` from an ftlab checkout"))
    state = finetune_pipeline(str(params), overrides=overrides or None, return_state=True)
    if not state.is_completed():
        _fail(RuntimeError(f"pipeline {state.name}: {state.message}"))


def _stage_config(params: Path | None, overrides: list[str] | None, model: Path | None = None,
                  settings: dict | None = None):
    """The config, or exit 1 naming the bad field."""
    from ftlab.config import ConfigError

    try:
        return _config(params, overrides, model, settings)
    except ConfigError as e:
        _fail(e)


def _stage(name: str, params: Path | None, overrides: list[str] | None, *args, model: Path | None = None,
           settings: dict | None = None):
    """Run one stage function from ftlab.stages, turning every expected failure into exit 1."""
    from ftlab import stages
    from ftlab.config import ConfigError
    from ftlab.data import DataError

    try:
        return getattr(stages, name)(_config(params, overrides, model, settings), *args)
    except (ConfigError, DataError, ValueError, OSError, stages.StageFailed) as e:
        _fail(e)


@app.command()
def merge(run: Path = typer.Argument(..., help="run directory of a LoRA/DoRA/IA3 run"), out: Path = typer.Option(..., help="where to write the merged model")) -> None:
    """Merge a run's adapter into the base model and save the full model (safetensors)."""
    from ftlab.runs import merge_adapter

    try:
        merge_adapter(run, out)
    except (ValueError, OSError) as e:
        _fail(e)
    say(f"merged model written to {out}")


@app.command()
def ci(
    summary: Path = typer.Option(..., help="where to write the markdown summary (job summary, PR comment)"),
    base: str = typer.Option("HEAD", help="git revision to diff and gate against: a pull request's base branch"),
    remote: str | None = typer.Option(None, envvar="DVC_REMOTE_URL", help="DVC remote URL (default: the project's default remote)"),
    pull: bool = typer.Option(True, "--pull/--no-pull", help="dvc pull before reproducing"),
    push: bool = typer.Option(False, "--push/--no-push", help="dvc push the outputs when the gate passes"),
    plots_dir: Path | None = typer.Option(None, help="write the `dvc plots diff` HTML against --base here"),
) -> None:
    """CI retraining: dvc pull, dvc repro, quality gate against --base, summary, dvc push."""
    from ftlab.ci import CiFailed, retrain
    from ftlab.config import ConfigError

    try:
        result = retrain(base, summary, remote=remote, pull=pull, push=push, plots_dir=plots_dir)
    except (CiFailed, ConfigError, OSError) as e:
        _fail(e)
    if not result.passed:
        _fail(CiFailed("quality gate failed: " + "; ".join(result.failures)))
    say(f"quality gate passed; summary in {summary}")


if __name__ == "__main__":
    app()
