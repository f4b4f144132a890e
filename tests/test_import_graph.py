"""The package's import graph has no cycles (issue 19, item 5: types in their rooms).

Every `import` of a `gpt2` module counts, wherever it stands: at the top of a module, inside a
function (a lazy import) and under `if TYPE_CHECKING:`. A lazy import that points back up is
still a dependency -- it only moves the failure from import time to the first call -- and a
type-only import that closes a circle says the type lives in the wrong room. So the rule is
simple: draw an edge for each of them, and no strongly connected component may hold more than
one module.

`from a.b import c` depends on the module `a.b.c` when there is one (importing a submodule runs
its package's `__init__`, but a sibling reaching a sibling through the package path is not a
dependency on that `__init__`), else on `a.b` itself. The parent packages Python imports on the
way are not edges: every module would otherwise depend on `gpt2/__init__.py`.
"""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent / "src"


def package_modules(root: Path = SOURCE / "gpt2") -> dict[str, Path]:
    modules = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the gpt2 modules it imports (every import statement, lazy or type-only too)."""

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for name in names:
                target = owner(name) if name.split(".")[0] == "gpt2" else None
                if target is not None and target != module:
                    edges.add(target)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def describe(component: list[str], graph: dict[str, set[str]]) -> str:
    members = set(component)
    return "; ".join(f"{a} -> {b}" for a in component for b in sorted(graph[a] & members))


def test_the_package_has_no_import_cycles():
    graph = import_graph(package_modules())
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(describe(c, graph) for c in found)


def test_the_checker_sees_lazy_and_type_only_imports(tmp_path):
    # a -> b at the top, b -> a inside a function: a cycle; c -> d under TYPE_CHECKING, d -> c lazily.
    package = tmp_path / "gpt2"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import thing\n")
    (package / "b.py").write_text("def f():\n    from gpt2 import a\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .d import D\n")
    (package / "d.py").write_text("def g():\n    import gpt2.c\n")
    (package / "e.py").write_text("from . import a\nimport json\n")
    graph = import_graph(package_modules(package))
    assert graph["gpt2.e"] == {"gpt2.a"}
    assert cycles(graph) == [["gpt2.a", "gpt2.b"], ["gpt2.c", "gpt2.d"]]
