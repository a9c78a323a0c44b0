"""The import graph of src/ftlab, read with ``ast``: no cycle, and every import goes down the layers.

Function-level imports count (a cycle they hide still ties the modules together); ``if
TYPE_CHECKING:`` blocks do not (they never run). The layers, from the ground floor up, are the
README's architecture diagram; the top-level modules (stages, cli, ci, progress) orchestrate them.
"""

from __future__ import annotations

import ast
from pathlib import Path

from ftlab.core.source import SRC, imported_modules, module_file

LAYERS = ("core", "learning", "data", "training", "analysis", "serving")  # each may import those before it


def _modules() -> list[str]:
    return sorted(".".join(p.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")
                  for p in SRC.rglob("*.py"))


def _layer(module: str) -> int:
    """The module's rank: its subpackage's place in LAYERS; orchestration (and the root) above them all."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else len(LAYERS)


def _graph() -> dict[str, set[str]]:
    """module -> the ftlab modules it imports (a package it lies inside is no edge: Python runs it first)."""
    graph: dict[str, set[str]] = {}
    for name in _modules():
        path = module_file(name)
        assert path is not None
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = imported_modules(ast.parse(path.read_text(encoding="utf-8")).body, package)
        graph[name] = {m for m in found if m != name and not name.startswith(m + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import cycles among ftlab modules:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_imports_go_down_the_layers() -> None:
    up = [f"{m} -> {t}" for m, targets in _graph().items() for t in sorted(targets)
          if t != "ftlab" and _layer(t) > _layer(m)]
    assert not up, "imports that go up the layers " + " < ".join(LAYERS) + " < orchestration:\n" + "\n".join(up)


def test_the_graph_sees_function_level_imports(tmp_path: Path) -> None:
    """The checks above would pass vacuously if function-level imports were missed."""
    code = "def f():\n    from ftlab.core import io\n"
    assert imported_modules(ast.parse(code).body, "ftlab") >= {"ftlab.core.io"}
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
