"""Reading a params file: its text, its YAML with every key given once, and the line of each key.

``ftlab.learning.config`` validates what this reads; the errors here and there are ``ConfigError`` and name
the file and, where there is one, the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ftlab.core.files import NotUtf8, file_problem, utf8_text


class ConfigError(ValueError):
    """A params file that cannot be used; the message names the file and the field."""


def read_params(path: Path) -> str:
    """The params file's text (UTF-8), or an error saying what the path is or where a bad byte is."""
    problem = file_problem(path)
    if problem is not None:
        if problem.kind == "missing":
            raise ConfigError(f"params file not found: {path}")
        if problem.kind == "unreadable":
            raise ConfigError(f"params file {path} {problem.words}")
        words = problem.words if problem.kind in ("loop", "directory", "fifo") else "not a regular file"
        raise ConfigError(f"params file {path} is {words}{'' if problem.kind == 'loop' else '; give a YAML file'}")
    try:
        return utf8_text(path.read_bytes())
    except OSError as e:
        raise ConfigError(f"params file {path} cannot be read ({e.strerror or e})") from None
    except NotUtf8 as e:
        raise ConfigError(f"{path}: {e}; save the file as UTF-8") from None


def parse_params(path: Path, text: str) -> dict[str, Any]:
    """The params file's mapping; an empty file and a key given twice are errors, not defaults."""
    try:
        raw = yaml.safe_load(text)
        _check_unique_keys(yaml.compose(text), path, "")
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from e
    if raw is None:
        raise ConfigError(f"params file {path} is empty; write the settings to change (data.source, methods, ...), "
                          "or {} for every default (the built-in demo)")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of sections, got {type(raw).__name__}")
    return raw


def _check_unique_keys(node: Any, path: Path, parent: str) -> None:
    """A key given twice in one mapping (YAML keeps the last silently) is an error naming both lines."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            dotted = f"{parent}.{key.value}" if parent else str(key.value)
            line = key.start_mark.line + 1
            if dotted in seen:
                raise ConfigError(f"{path}: key {dotted!r} is given twice (line {seen[dotted]} and line {line}); "
                                  "YAML would keep only the last: keep one")
            seen[dotted] = line
            _check_unique_keys(value, path, dotted)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_unique_keys(item, path, parent)


def key_lines_of(text: str) -> dict[str, int]:
    """The 1-based line of every key in a params file, by its dotted path (flow style included)."""
    out: dict[str, int] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                dotted = f"{path}.{key.value}" if path else str(key.value)
                out[dotted] = key.start_mark.line + 1
                walk(value, dotted)

    walk(yaml.compose(text) if text else None, "")
    return out


def line_of(key_lines: dict[str, int], field: str) -> str:
    """`` (line N)`` of the field, or of its closest parent in the file (a missing key's section)."""
    parts = field.split(".")
    for end in range(len(parts), 0, -1):
        if (line := key_lines.get(".".join(parts[:end]))) is not None:
            return f" (line {line})"
    return ""


def set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = raw
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
