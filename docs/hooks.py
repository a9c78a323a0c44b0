"""MkDocs hook: the params and command reference pages, generated from the code at every build.

They are never committed, so they cannot go stale: ``ftlab.cli.reference`` reads the pydantic
models' field descriptions and the typer app each time the site is built.
"""

from __future__ import annotations

from typing import Any

from mkdocs.structure.files import File, Files

from ftlab.cli.reference import cli_markdown, params_markdown


def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, "reference/params.md", content=params_markdown()))
    files.append(File.generated(config, "reference/cli.md", content=cli_markdown()))
    return files
