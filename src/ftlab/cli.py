"""The ``ftlab`` command line: the pipeline's stages one by one, the whole pipeline, method listing, merging."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

app = typer.Typer(help="Fine-tune a transformer with several methods and measure which to pick.", no_args_is_help=True)
console = Console()

PARAMS = typer.Option(None, "--params", "-p", help="params file (default: params.yaml if present, else built-in defaults)")
SET = typer.Option(None, "--set", "-S", help="override one value, e.g. -S method_params.lora.r=16 (YAML value)")


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


def _config(params: Optional[Path], overrides: Optional[list[str]]):
    import yaml

    from ftlab.config import load_config

    if params is None and Path("params.yaml").is_file():
        params = Path("params.yaml")
    parsed = {}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set expects KEY=VALUE, got {item!r}")
        parsed[key] = yaml.safe_load(value)
    return load_config(params, parsed)


def _fail(e: Exception) -> None:
    console.print(f"[bold red]error:[/] {e}")
    raise typer.Exit(1)


@app.command()
def methods() -> None:
    """List the fine-tuning methods, one line each on what they train."""
    from ftlab.methods import METHODS

    table = Table("method", "trains", "default lr", box=None)
    for name, method in METHODS.items():
        table.add_row(name, method.summary, f"{method.Params().lr:g}")
    console.print(table)


@app.command()
def prepare(params: Optional[Path] = PARAMS, set_: Optional[list[str]] = SET) -> None:
    """Load the configured data source, split it and write Parquet splits to data.prepared_dir."""
    _stage("prepare", params, set_)


@app.command()
def validate(params: Optional[Path] = PARAMS, set_: Optional[list[str]] = SET) -> None:
    """Run the Great Expectations suite on the prepared splits; exit 1 naming each failure."""
    _stage("validate", params, set_)


@app.command()
def train(
    method: Optional[str] = typer.Option(None, "--method", "-m", help="method name (see `ftlab methods`); default: every method listed in params `methods`"),
    params: Optional[Path] = PARAMS,
    set_: Optional[list[str]] = SET,
    out: Optional[Path] = typer.Option(None, help="run directory, with --method (default: <train.output_dir>/<method>)"),
) -> None:
    """Fine-tune a method and write its run directory (weights, metrics, history, predictions)."""
    from ftlab.config import ConfigError
    from ftlab.data import DataError
    from ftlab.methods import METHODS
    from ftlab.trainer import TrainingDiverged

    try:
        cfg = _config(params, set_)
        if method is not None and method not in METHODS:
            raise ConfigError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
        if out is not None and method is None:
            raise ConfigError("--out needs --method (one run directory per method)")
        from ftlab import stages
        from ftlab.metrics import flat

        for name in [method] if method else cfg.methods:
            metrics = flat(stages.train(cfg, name, out=out))
            console.print(
                f"[green]{name}[/]: accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}, "
                f"{metrics['trainable_percent']:.3g}% trainable, {metrics['train_seconds']:.1f}s"
            )
    except (ConfigError, DataError, ValueError, OSError, MemoryError, TrainingDiverged) as e:
        _fail(e)


@app.command()
def check(
    method: str = typer.Option(..., "--method", "-m", help="method whose finished run to check"),
    params: Optional[Path] = PARAMS,
    set_: Optional[list[str]] = SET,
) -> None:
    """Overfitting and drift checks (train/val gap, rising val loss, Evidently report) for one run."""
    result = _stage("check", params, set_, method)
    console.print(f"{method}: [bold]{result['verdict']}[/] " + "; ".join(result["reasons"]))


@app.command()
def compare(params: Optional[Path] = PARAMS, set_: Optional[list[str]] = SET) -> None:
    """Write the comparison report (markdown, HTML, JSON, PNG plots) over the configured methods."""
    result = _stage("compare", params, set_)
    console.print(result["recommendation"]["text"])


@app.command()
def pipeline(params: Path = typer.Option(Path("params.yaml"), "--params", "-p", help="params file")) -> None:
    """Run the whole pipeline as the Prefect flow `finetune_pipeline` (same stages as dvc.yaml)."""
    import os

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "flows"))
    try:
        from finetune import finetune_pipeline
    except ImportError:
        _fail(ImportError("flows/finetune.py not found: run `ftlab pipeline` from an ftlab checkout"))
    state = finetune_pipeline(str(params), return_state=True)
    if not state.is_completed():
        _fail(RuntimeError(f"pipeline {state.name}: {state.message}"))


def _stage(name: str, params: Optional[Path], overrides: Optional[list[str]], *args):
    """Run one stage function from ftlab.stages, turning every expected failure into exit 1."""
    from ftlab import stages
    from ftlab.config import ConfigError
    from ftlab.data import DataError

    try:
        return getattr(stages, name)(_config(params, overrides), *args)
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
    console.print(f"merged model written to {out}")


if __name__ == "__main__":
    app()
