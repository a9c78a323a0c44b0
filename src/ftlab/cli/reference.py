"""The generated references: every params key, every command, and the JSON Schema of params.yaml.

One source each, so the documentation cannot drift from the code: the params reference and the
schema come from the pydantic models (their field descriptions and class docstrings), the command
reference from the typer app. The docs site renders the two pages at build time (``docs/hooks.py``);
``params.schema.json`` is committed for editors (the YAML language server) and a test fails when it
is stale. ``python -m ftlab.cli.reference`` rewrites it; ``--check`` only compares.
"""

from __future__ import annotations

import json
import logging
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo

log = logging.getLogger(__name__)
SCHEMA_FILE = "params.schema.json"


def params_schema() -> dict[str, Any]:
    """The JSON Schema of params.yaml, from the same models that validate it."""
    from ftlab.learning.config import Config

    schema = Config.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "ftlab params.yaml", **schema}


def schema_text() -> str:
    return json.dumps(params_schema(), indent=2, ensure_ascii=False) + "\n"


def _arms(annotation: Any) -> list[Any]:
    """The alternatives of a union (``X | None``), or the annotation alone."""
    if get_origin(annotation) in (Union, types.UnionType):
        return [a for arm in get_args(annotation) for a in _arms(arm)]
    return [annotation]


def _type_name(annotation: Any) -> str:
    names = []
    for arm in _arms(annotation):
        if get_origin(arm) is typing.Annotated:
            arm = get_args(arm)[0]
        if arm is type(None):
            names.append("null")
        elif get_origin(arm) is Literal:
            names.append(" / ".join(f"`{v}`" for v in get_args(arm)))
        elif get_origin(arm) in (list, dict):
            names.append(f"{get_origin(arm).__name__}[{', '.join(_type_name(a) for a in get_args(arm))}]")
        elif isinstance(arm, type):
            names.append({"Path": "path", "str": "string"}.get(arm.__name__, arm.__name__))
        else:
            names.append(str(arm))
    return " or ".join(names)


_BOUNDS = ((at.Gt, "gt", ">"), (at.Ge, "ge", "≥"), (at.Lt, "lt", "<"), (at.Le, "le", "≤"))


def _bounds(field: FieldInfo) -> str:
    """The constraints a value must meet: ``> 0``, ``≥ 0, < 1``, a pattern."""
    metadata = list(field.metadata)
    for arm in _arms(field.annotation):
        if get_origin(arm) is typing.Annotated:
            metadata += get_args(arm)[1:]
    found = []
    for item in metadata:
        for kind, attr, sign in _BOUNDS:
            if isinstance(item, kind):
                found.append(f"{sign} {getattr(item, attr)}")
        if getattr(item, "pattern", None):
            found.append(f"matches `{item.pattern}`")
    return ", ".join(found)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(section)"
    return f"`{json.dumps(value, default=str)}`"


def _cell(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    """One table row per key of ``model``, nested sections flattened to dotted keys."""
    rows = []
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            rows.append(f"| `{prefix}{name}` | section | | | {_cell(field.description or sub.__doc__)} |")
            rows += _rows(sub, f"{prefix}{name}.")
            continue
        rows.append(f"| `{prefix}{name}` | {_type_name(field.annotation)} | {_default(field)} | "
                    f"{_bounds(field)} | {_cell(field.description)} |")
    return rows


_HEADER = ["| key | type | default | allowed | description |", "|---|---|---|---|---|"]


def _section(title: str, doc: str | None, model: type[BaseModel], prefix: str) -> list[str]:
    return [f"## {title}", "", _cell(doc), "", *_HEADER, *_rows(model, prefix), ""]


def params_markdown() -> str:
    """The params reference: every key of params.yaml with its type, default, bounds and description."""
    from ftlab.learning.config import Config
    from ftlab.learning.methods import METHODS
    from ftlab.learning.tasks import TASKS

    out = ["# params.yaml reference", "",
           "Generated from the typed configuration (`src/ftlab/learning/config.py`, `src/ftlab/core/config.py`, each "
           "method's and task's module) when the site is built. Unknown keys are errors; every value is checked "
           "when the file is loaded. Editors complete and check keys with `params.schema.json` (the first line "
           "of `params.yaml` points the YAML language server at it).", ""]
    top = [n for n, f in Config.model_fields.items()
           if not (isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)) and n != "task"]
    out += ["## Top level", "", _cell(Config.__doc__), "", *_HEADER]
    out += [r for r in _rows(Config, "") if r.split("`")[1] in top]
    out.append("")
    out += ["## task", "", _cell(Config.model_fields["task"].description) + ": `task.type` picks one of these, "
            "each with its own options.", ""]
    for name, task in TASKS.items():
        rows = [r for r in _rows(task.Options, "task.") if not r.startswith("| `task.type`")]
        out += [f"### `type: {name}`", "", _cell(task.summary), "", *_HEADER, *rows, ""]
    for name, field in Config.model_fields.items():
        sub = field.annotation
        if name != "method_params" and isinstance(sub, type) and issubclass(sub, BaseModel):
            out += _section(name, sub.__doc__, sub, f"{name}.")
    out += ["## method_params", "", _cell(Config.model_fields["method_params"].description), ""]
    for name, method in METHODS.items():
        out += [f"### `{name}`", "", _cell((method.__doc__ or "").split("\n\n")[0]), "", *_HEADER,
                *_rows(method.Params, f"method_params.{name}."), ""]
    return "\n".join(out)


def cli_markdown() -> str:
    """The command reference: each command's usage, help and options, from the typer app itself."""
    import typer

    from ftlab.cli import app

    root = typer.main.get_command(app)
    ctx = root.context_class(root, info_name="ftlab")  # typer vendors its own click: no `import click`
    out = ["# Command reference", "", "Generated from the command definitions (`src/ftlab/cli/`) when the site "
           "is built; `ftlab COMMAND --help` prints the same.", "", _cell(root.help), "",
           "```", root.get_usage(ctx), "```", "", "Global option: `-v`, `--verbose`: debug logging and the "
           "traceback of a failure.", ""]
    commands = getattr(root, "commands", {})
    for name in sorted(commands):
        cmd = commands[name]
        sub = cmd.context_class(cmd, info_name=name, parent=ctx)
        out += [f"## `ftlab {name}`", "", (cmd.help or "").strip(), "", "```", cmd.get_usage(sub), "```", ""]
        rows = [_option_row(p, sub) for p in cmd.params if not getattr(p, "hidden", False)]
        if rows:
            out += ["| option | help |", "|---|---|", *rows, ""]
    return "\n".join(out)


def _option_row(param: Any, ctx: Any) -> str:
    record = param.get_help_record(ctx) if hasattr(param, "get_help_record") else None
    if record is None:  # an argument
        return f"| `{param.human_readable_name}` | argument |"
    names, help_text = record
    return f"| `{names}` | {_cell(help_text)} |"


def main(argv: list[str]) -> int:
    """Write params.schema.json at the project root; with --check, exit 1 when the committed one is stale."""
    path = Path(SCHEMA_FILE)
    text = schema_text()
    if "--check" in argv:
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            log.error("%s is stale: run python -m ftlab.cli.reference", path)
            return 1
        return 0
    path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    logging.basicConfig(format="%(message)s")
    sys.exit(main(sys.argv[1:]))
