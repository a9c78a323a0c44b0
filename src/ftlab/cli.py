"""The ``ftlab`` command line: list methods, prepare data, train a method, merge an adapter."""

from __future__ import annotations

import logging
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
def prepare(params: Optional[Path] = PARAMS, set_: Optional[list[str]] = SET, out: Optional[Path] = typer.Option(None, help="output directory (default: data.prepared_dir)")) -> None:
    """Load the configured data source, split it and write Parquet splits."""
    from ftlab.config import ConfigError
    from ftlab.data import DataError, prepare as run_prepare

    try:
        run_prepare(_config(params, set_), out)
    except (ConfigError, DataError) as e:
        _fail(e)


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

    try:
        cfg = _config(params, set_)
        if method is not None and method not in METHODS:
            raise ConfigError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
        if out is not None and method is None:
            raise ConfigError("--out needs --method (one run directory per method)")
        from ftlab.train import train as run_train

        for name in [method] if method else cfg.methods:
            metrics = run_train(cfg, name, out or cfg.train.output_dir / name)
            console.print(
                f"[green]{name}[/]: accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}, "
                f"{metrics['trainable_percent']:.3g}% trainable, {metrics['train_seconds']:.1f}s"
            )
    except (ConfigError, DataError, ValueError, OSError) as e:
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
