"""What every ``ftlab`` command shares: the app, its logging, the params options, and one way to
run a stage function and turn its expected failures into a one-line error and exit 1."""

from __future__ import annotations

import gc
import logging
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

# plain click help: typer's rich panels label every flag, --help included, as <bool>
app = typer.Typer(help="Fine-tune a transformer with several methods and measure which to pick.", no_args_is_help=True,
                  rich_markup_mode=None)
console = Console()

PARAMS = typer.Option(None, "--params", "-p", metavar="FILE",
                      help="params file (default: params.yaml if present, else built-in defaults)")
SET = typer.Option(None, "--set", "-S", metavar="KEY=VALUE",
                   help="override one value, e.g. -S method_params.lora.r=16 (YAML value); repeatable")


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
    # A command's imports (torch, transformers, GX, Evidently) create millions of long-lived objects, and
    # with CPython's default thresholds (700, 10, 10) the cycle collector walks them over and over: 10% of
    # a 2-step `ftlab train` (7.1 -> 6.4 CPU-s) and of validate and promote. Collections 14 times rarer;
    # cyclic garbage is still collected, at most some 10,000 objects later.
    gc.set_threshold(10_000, 10, 10)


def set_values(overrides: list[str] | None) -> dict:
    """The ``-S KEY=VALUE`` items as {dotted key: YAML value}."""
    import yaml

    from ftlab.core.params import ConfigError

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


def load(params: Path | None, overrides: list[str] | None, model: Path | None = None, settings: dict | None = None):
    """The config from ``params`` with the -S overrides and the ``settings`` of a command's own
    options; ``model`` (an operations command's --model) sets promote.dir and promote.name, so that
    promote writes and predict and monitor read there."""
    from ftlab.learning.config import load_config

    if params is None and Path("params.yaml").is_file():
        params = Path("params.yaml")
    model_dir = {} if model is None else {"promote.dir": str(model.parent), "promote.name": model.name}
    return load_config(params, {**(settings or {}), **model_dir, **set_values(overrides)})


def say(*parts: str | tuple[str, str]) -> None:
    """Print one line verbatim: no Rich markup or emoji codes read from it, no wrapping. A part is
    plain text or (text, style)."""
    console.print(Text.assemble(*parts), soft_wrap=True, highlight=False)


def fail(e: Exception) -> NoReturn:
    logging.getLogger(__name__).debug("where it failed:", exc_info=e)  # the traceback with -v
    say(("error:", "bold red"), f" {e}")
    raise typer.Exit(1)


def stage_config(params: Path | None, overrides: list[str] | None, model: Path | None = None,
                 settings: dict | None = None):
    """The config, or exit 1 naming the bad field."""
    from ftlab.core.params import ConfigError

    try:
        return load(params, overrides, model, settings)
    except ConfigError as e:
        fail(e)


def run_stage(name: str, params: Path | None, overrides: list[str] | None, *args: Any, model: Path | None = None,
              settings: dict | None = None):
    """Run one stage function from ftlab.stages, turning every expected failure into exit 1."""
    from ftlab import stages
    from ftlab.core.params import ConfigError
    from ftlab.data.prepare import DataError

    try:
        return getattr(stages, name)(load(params, overrides, model, settings), *args)
    except (ConfigError, DataError, ValueError, OSError, stages.StageFailed) as e:
        fail(e)


def parse_size(value: str | None):
    """A --train-size value: a positive number, 'all' or None."""
    if value is None or value == "all":
        return value
    if not value.isdigit() or int(value) < 1:
        raise typer.BadParameter(f"--train-size must be a positive number or 'all', got {value!r}")
    return int(value)
