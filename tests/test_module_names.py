"""Every `gpt2.x.y` dotted name in the docstrings, comments and docs names something that exists:
a module of the package, or a name defined at the top of one (a class's attribute one level down).
Modules move (gpt2.pure became gpt2.engines.pure); a docstring that still names the old place
sends a reader nowhere. Read with `ast`, without importing anything."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from test_import_graph import SOURCE, package_modules

ROOT = SOURCE.parent
NAME = re.compile(r"(?<![\w/.\-])gpt2(?:\.[A-Za-z_]\w*)+")
# Dotted words that are not Python names: safetensors metadata keys, a request-scope key, file
# names, and the example of a dotted name in the explorer's source viewer.
NOT_PYTHON = {"gpt2.log", "gpt2.quantization", "gpt2.int8.scheme", "gpt2.tiktoken", "gpt2.a.b.Class.method"}


def top_level_names(body: list[ast.stmt]) -> dict[str, ast.stmt]:
    names: dict[str, ast.stmt] = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update((n.id, node) for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update(((a.asname or a.name.split(".")[0]), node) for a in node.names)
        elif isinstance(node, (ast.If, ast.Try)):
            names.update(top_level_names(node.body + getattr(node, "orelse", [])))
    return names


def resolves(name: str, modules: dict[str, Path]) -> bool:
    parts = name.split(".")
    k = len(parts)
    while k and ".".join(parts[:k]) not in modules:
        k -= 1
    if not k:
        return False
    body = ast.parse(modules[".".join(parts[:k])].read_text(encoding="utf-8")).body
    for attr in parts[k : k + 2]:  # a module's name, and a class's attribute
        node = top_level_names(body).get(attr)
        if node is None:
            return False
        if not isinstance(node, ast.ClassDef):
            return True
        body = node.body
    return True


def test_every_dotted_gpt2_name_in_the_sources_and_docs_exists():
    modules = package_modules()
    files = [*sorted((ROOT / "src").rglob("*.py")), *sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
    missing = []
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in NAME.finditer(line):
                name = match.group(0).rstrip(".")
                if name not in NOT_PYTHON and not resolves(name, modules):
                    missing.append(f"{path.relative_to(ROOT)}:{number}: {name}")
    assert not missing, "names of nothing:\n" + "\n".join(missing)


def test_the_check_finds_a_moved_module():
    modules = package_modules()
    assert resolves("gpt2.engines.pure.layout", modules)
    assert resolves("gpt2.engines.torch.model.GPT2.forward", modules)
    assert not resolves("gpt2.pure.layout", modules)  # where it was before it moved
    assert not resolves("gpt2.engines.torch.model.GPT2.no_such_method", modules)
