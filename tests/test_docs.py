"""The documentation: the site builds strictly, and what is generated from the code is current.

``mkdocs build --strict`` fails on a broken link, a page missing from the nav, a stale anchor or a
docstring mkdocstrings cannot render; the params and command pages are generated during that build
(docs/hooks.py), so they cannot go stale. ``params.schema.json`` is committed for editors, so it is
compared with what the models generate now.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from ftlab.cli.reference import SCHEMA_FILE, cli_markdown, params_markdown, schema_text

ROOT = Path(__file__).resolve().parents[1]


def test_site_builds_strictly(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    params = (tmp_path / "site/reference/params/index.html").read_text()
    assert "monitor.min_drifted" in params and "method_params.lora.r" in params
    assert "ftlab monitor" in (tmp_path / "site/reference/cli/index.html").read_text()


def test_committed_schema_is_current():
    committed = (ROOT / SCHEMA_FILE).read_text(encoding="utf-8")
    assert committed == schema_text(), f"{SCHEMA_FILE} is stale: run python -m ftlab.cli.reference"


@pytest.mark.parametrize("params", ["params.yaml", "params.smoke.yaml"])
def test_params_files_follow_the_schema_and_point_editors_at_it(params):
    text = (ROOT / params).read_text(encoding="utf-8")
    assert text.startswith(f"# yaml-language-server: $schema={SCHEMA_FILE}\n")
    jsonschema.validate(yaml.safe_load(text), json.loads((ROOT / SCHEMA_FILE).read_text(encoding="utf-8")))


def test_schema_refuses_what_the_config_refuses():
    schema = json.loads(schema_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"train": {"batch_size": 0}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"report": {"tolerence": 0.01}}, schema)


def test_every_params_key_has_a_description():
    """The reference's one source is the models' field descriptions: a key without one is a blank row."""
    rows = [line for line in params_markdown().splitlines() if line.startswith("| `")]
    blank = [row.split("`")[1] for row in rows if row.rstrip().endswith("|  |")]
    assert len(rows) > 100 and not blank, blank


def test_cli_reference_lists_every_command_with_its_options():
    from ftlab.cli import app

    page = cli_markdown()
    for command in app.registered_commands:
        name = command.name or command.callback.__name__.replace("_", "-")
        assert f"## `ftlab {name}`" in page
    assert "`--fail-on-drift`" in page and "`-S, --set KEY=VALUE`" in page
