"""Which ftlab source a stage command runs, read from the source itself (``ast``), and its digest.

``ftlab <stage>`` runs the CLI command of that name and the stage function of that name: the CLI
package, the two functions, the helpers beside them, and every ftlab module they import, directly
or not, function-level imports included (``if TYPE_CHECKING:`` blocks are skipped). The other
commands and stage functions are defined on the way, never run: their bodies are not its code.

Two things are built on this one walk: ``tests/test_dvc_deps.py`` checks that each dvc.yaml stage
depends on every file its command runs, and a cell's identity (``ftlab.training.identity``) carries
``code_digest("train")``: a hash of the code that trains the cell, as code, not as bytes. Comments,
formatting, docstrings and the other commands (``ftlab ci``'s help text, say) are not in it; a
changed statement of any module that training runs is.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

SRC = Path(__file__).resolve().parents[1]  # the ftlab package directory
CLI, STAGES = "ftlab.cli", "ftlab.stages"  # the `ftlab` command, and the stage functions its commands call
STAGE_FUNCTIONS = frozenset({"ingest", "prepare", "validate", "search", "plan", "race", "train", "check", "compare", "promote",
                             "rollback", "monitor"})


def module_file(name: str, src: Path = SRC) -> Path | None:
    """The source file of ftlab module ``name`` (a package's __init__.py), or None outside ftlab."""
    base = src.parent / Path(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _parse(name: str, src: Path) -> ast.Module:
    path = module_file(name, src)
    if path is None:
        raise ValueError(f"no ftlab module {name!r} under {src}")
    return ast.parse(path.read_text(encoding="utf-8"))


def _package(name: str, src: Path) -> str:
    path = module_file(name, src)
    return name if path is not None and path.name == "__init__.py" else name.rpartition(".")[0]


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _imported_names(node: ast.AST, package: str, src: Path) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        parts = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*parts, base] if base else parts)
    # `from ftlab import stages` imports the module ftlab.stages; `from ftlab.data.prepare import x`, ftlab.data.prepare
    return [f"{base}.{a.name}" if module_file(f"{base}.{a.name}", src) else base for a in node.names]


def imported_modules(nodes: list[ast.stmt], package: str, src: Path = SRC) -> set[str]:
    """The ftlab modules these statements import at run time, with the packages that importing them
    runs (ftlab.learning.methods for ftlab.learning.methods.lora)."""
    found: set[str] = set()
    stack: list[ast.AST] = list(nodes)
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            stack.extend(getattr(node, "orelse", []))
            continue
        for name in _imported_names(node, package, src):
            parts = name.split(".")
            found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1) if module_file(".".join(parts[:i]), src)}
        stack.extend(ast.iter_child_nodes(node))
    return {m for m in found if m.split(".")[0] == "ftlab"}


def _is_command(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == "command"
               for d in node.decorator_list)


def _is_entry(module: str, node: ast.stmt) -> bool:
    """A CLI command (``@app.command()``) anywhere, or a stage function of ftlab.stages."""
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return False
    return _is_command(node) or (module == STAGES and node.name in STAGE_FUNCTIONS)


def entry_nodes(module: str, entry: str, src: Path = SRC) -> list[ast.stmt]:
    """What ``ftlab <entry>`` runs of ``module``: all of it but the other commands and stage
    functions (their bodies are defined, never run)."""
    return [node for node in _parse(module, src).body
            if not (_is_entry(module, node) and getattr(node, "name", None) != entry)]


def stage_code(command: str, src: Path = SRC) -> dict[str, list[ast.stmt]]:
    """{module: its statements that ``ftlab <command>`` runs}, from the CLI package down through
    every module imported on the way, function-level imports included."""
    code: dict[str, list[ast.stmt]] = {}
    todo = [CLI, "ftlab"]
    while todo:
        name = todo.pop()
        if name in code:
            continue
        code[name] = entry_nodes(name, command, src)
        todo.extend(imported_modules(code[name], _package(name, src), src) - code.keys())
    return code


def stage_files(command: str, src: Path = SRC) -> list[Path]:
    """The source files ``ftlab <command>`` runs code of (what its dvc.yaml stage must depend on)."""
    return sorted({p for m in stage_code(command, src) if (p := module_file(m, src)) is not None})


def _without_docstrings(nodes: list[ast.stmt]) -> list[ast.stmt]:
    def strip(body: list[ast.stmt]) -> list[ast.stmt]:
        first = body[0] if body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            body = body[1:]
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                node.body = strip(node.body) or [ast.Pass()]
        return body

    return strip(list(nodes))


def code_digest(command: str = "train", src: Path = SRC) -> str:
    """A hash of the code ``ftlab <command>`` runs: changes with a statement, not with a comment, a
    docstring, the layout or another command.

    Parsing the modules takes about 0.3 s and a flow asks for every cell's identity several times:
    the digest is kept per state of the source files (each file's path, inode, size and modification time),
    so an edit between two calls is always seen."""
    state = []
    for path in sorted(src.rglob("*.py")):
        stat = path.stat()
        state.append((str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns))
    return _digest(command, src, tuple(state))


@functools.lru_cache(maxsize=32)
def _digest(command: str, src: Path, state: tuple[tuple[str, int, int, int], ...]) -> str:
    h = hashlib.sha256()
    for module, nodes in sorted(stage_code(command, src).items()):
        h.update(module.encode())
        h.update(ast.dump(ast.Module(body=_without_docstrings(nodes), type_ignores=[])).encode())
    return h.hexdigest()
