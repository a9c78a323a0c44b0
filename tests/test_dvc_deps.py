"""dvc.yaml's stage deps cover the code each stage runs: every ftlab module that the stage's command
imports, directly or through other modules, function-level imports included. Editing any of them
must re-run the stage; a module missing from its deps leaves stale results marked up to date.

The imports are read from the source (ast), not listed here, so a new module (a new package under
src/ftlab/, say) is checked as soon as a stage imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from ftlab.identity import module_file

ROOT = Path(__file__).resolve().parents[1]
STAGE_FUNCTIONS = {"prepare", "validate", "search", "train", "check", "compare", "promote", "monitor"}  # in ftlab.stages


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def imported_modules(nodes: list[ast.stmt], package: str) -> set[str]:
    """The ftlab modules these statements import at run time (``if TYPE_CHECKING:`` blocks skipped),
    with the packages that importing them runs (ftlab.methods for ftlab.methods.lora)."""
    found: set[str] = set()
    stack: list[ast.AST] = list(nodes)
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            stack.extend(getattr(node, "orelse", []))
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            # `from ftlab import stages` imports the module ftlab.stages; `from ftlab.data import x`, ftlab.data
            names = [f"{base}.{a.name}" if module_file(f"{base}.{a.name}") else base for a in node.names]
        for name in names:
            parts = name.split(".")
            found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1) if module_file(".".join(parts[:i]))}
        stack.extend(ast.iter_child_nodes(node))
    return {m for m in found if m.split(".")[0] == "ftlab"}


def parse(name: str) -> ast.Module:
    path = module_file(name)
    assert path is not None, name
    return ast.parse(path.read_text(encoding="utf-8"))


def _package(name: str) -> str:
    path = module_file(name)
    return name if path is not None and path.name == "__init__.py" else name.rpartition(".")[0]


def entry_imports(name: str, entry: str, is_entry: callable) -> set[str]:
    """What running function ``entry`` of module ``name`` imports: the module's top level, the
    function, and the module's helpers (functions that are not entries themselves)."""
    keep = []
    for node in parse(name).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and is_entry(node) and node.name != entry:
            continue
        keep.append(node)
    return imported_modules(keep, _package(name)) | {name, "ftlab"}


def closure(start: set[str], expanded: set[str]) -> set[str]:
    """``start`` and every module they import, all the way down (``expanded``: modules whose imports
    are already in ``start``, not to be read again in whole)."""
    seen, todo = set(expanded), list(start - expanded)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(imported_modules(parse(name).body, _package(name)) - seen)
    return seen


def _is_command(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == "command"
               for d in node.decorator_list)


def stage_modules(command: str) -> set[str]:
    """The ftlab modules that `ftlab <command>` runs: the CLI command and the stage function it calls."""
    entries = (entry_imports("ftlab.cli", command, _is_command)
               | entry_imports("ftlab.stages", command, lambda n: n.name in STAGE_FUNCTIONS))
    return closure(entries, expanded={"ftlab.cli", "ftlab.stages"})


def dvc_stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps if isinstance(d, str))


@pytest.mark.parametrize("stage", list(dvc_stages()))
def test_every_imported_module_is_a_dep_of_its_stage(stage):
    spec = dvc_stages()[stage]
    spec = spec.get("do", spec)  # foreach stages
    command = spec["cmd"].split()[1]  # "ftlab <command> ..."
    modules = stage_modules(command)
    assert {"ftlab.cli", "ftlab.stages", "ftlab.config"} <= modules  # the analysis found the entry points
    missing = sorted(str(module_file(m).relative_to(ROOT)) for m in modules if not covered(module_file(m), spec["deps"]))
    assert not missing, f"dvc.yaml stage {stage!r} (`{spec['cmd']}`) imports these but does not depend on them: {missing}"


def test_the_import_analysis_sees_function_level_and_transitive_imports():
    train = stage_modules("train")
    assert {"ftlab.train", "ftlab.trainer", "ftlab.data", "ftlab.metrics", "ftlab.modeling", "ftlab.methods.lora"} <= train
    assert "ftlab.report" not in train and "ftlab.checks" not in train  # other stages' code is not train's
    assert {"ftlab.report", "ftlab.stats"} <= stage_modules("compare")
    assert "ftlab.demo" in stage_modules("prepare")  # imported inside a function of ftlab.data
