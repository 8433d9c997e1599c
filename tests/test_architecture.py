"""The package's shape (issue 14): no import circle at module level, no private name crossing a package.

Read from the source with :mod:`ast` (nothing is imported), so a new circle or a reach into another
package's private helpers fails here, naming the modules.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "optuna_autoscale"


def _module(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


@functools.cache
def _imports() -> dict[str, list[tuple[str, list[str], bool]]]:
    """Module -> [(imported module, names, at module level)] for imports of this package."""
    out: dict[str, list[tuple[str, list[str], bool]]] = {}
    for path in sorted(PKG.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {id(n) for n in tree.body}
        # Imports under `if TYPE_CHECKING:` are not run.
        for n in tree.body:
            if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test):
                top |= {id(c) for c in ast.walk(n)}
                for c in ast.walk(n):
                    setattr(c, "_typing_only", True)
        rows = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("optuna_autoscale"):
                at_top = id(node) in top and not getattr(node, "_typing_only", False)
                rows.append((node.module, [a.name for a in node.names], at_top))
        out[_module(path)] = rows
    return out


def _package(module: str) -> str:
    """The package a module belongs to: ``optuna_autoscale.laws.transfer`` -> ``optuna_autoscale.laws``."""
    path = PKG.parent / Path(*module.split("."))
    return module if path.is_dir() else module.rsplit(".", 1)[0]


def test_no_import_circle_at_module_level() -> None:
    graph: dict[str, set[str]] = {}
    for mod, rows in _imports().items():
        for target, names, at_top in rows:
            if not at_top:
                continue
            # `from pkg import name` may import the submodule pkg.name.
            deps = {target} | {f"{target}.{n}" for n in names}
            graph.setdefault(mod, set()).update(d for d in deps if d in _imports() and d != mod)
    # A package's __init__ importing its own submodules (to re-export them) is not a circle through them.
    for m in graph:
        graph[m] = {d for d in graph[m] if not d.startswith(m + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_no_private_name_crosses_a_package() -> None:
    bad = []
    for mod, rows in _imports().items():
        for target, names, _ in rows:
            for n in names:
                if n.startswith("_") and not n.startswith("__") and _package(target) != _package(mod):
                    bad.append(f"{mod} imports {target}.{n}")
    assert not bad, "private names imported across packages:\n" + "\n".join(bad)
