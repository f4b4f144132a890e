"""Runs the guide: every ```python, ```bash and ```text block of docs/learn/*.md is a test (Sybil).

A chapter is read two ways, and both run every block: here, and as a notebook
(`jupytext --to ipynb`, where ```python blocks are cells, ```bash blocks are `%%bash`
cells and everything else is text; tests/test_guide_notebooks.py executes them).

- A chapter runs top to bottom in one namespace, as it does for a reader (and as its
  notebook does), in a fresh working directory holding `tests/data` and `tests/fixtures`
  (links to the repository's), so that what it writes never lands in the checkout.
  The chapters that name files start with a cell that moves to the directory holding
  `tests/data/the-verdict.txt` (a notebook starts in docs/learn/); here that is the
  working directory already.
- ```python blocks are executed; each ends in `assert`s against an oracle.
- ```bash blocks are `gpt2 ...` commands, one a line (a line ending in a backslash goes
  on), each run through `gpt2.cli.main` in the same process; each must exit 0. A
  ```text block right after one shows what it printed (stdout and stderr, in order), and
  must match it, with `...` standing for any text, as in a doctest.
- ```console blocks are shown, never run: commands for a terminal (an install, a server,
  a download). Each needs `<!-- skip: next "why" -->` before it, and the chapter's text
  says why too; a ```python block that cannot run everywhere (a GPU, a download) runs
  anyway and prints "skipped: why" instead, as a notebook cell would.
  `tests/test_guide.py` checks that no block escapes these rules.

Sybil is in the `docs` extra; without it the chapters are reported as skipped.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What a chapter finds under its working directory, as it would in the repository root.
LINKED = ("tests/data", "tests/fixtures")
CHECKER = doctest.OutputChecker()
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def parse_commands(source: str) -> list[str]:
    """```bash text -> its commands: one a line, continued over lines ending in a backslash;
    blank lines and `#` comments are skipped."""
    commands: list[str] = []
    lines = iter(source.splitlines())
    for line in lines:
        command = line.strip()
        while command.endswith("\\"):
            command = command[:-1] + " " + next(lines, "").strip()
        if command and not command.startswith("#"):
            commands.append(command)
    return commands


def run_gpt2(command: str) -> tuple[int, str]:
    """Run `gpt2 ARGS` in this process; its exit status and everything it printed."""
    from gpt2.cli import main

    argv = shlex.split(command, comments=True)
    if not argv or argv[0] != "gpt2":
        raise ValueError(f"only gpt2 commands run in ```bash blocks; show this one in ```console, skipped: {command!r}")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            status = main(argv[1:])
        except SystemExit as exc:  # argparse: --help, or a usage error
            status = exc.code if isinstance(exc.code, int) else 1
    return status, out.getvalue()


OUTPUT = "__guide_output__"  # where a ```bash block leaves what it printed, for the ```text block after it


def evaluate_bash(example: Any) -> str | None:
    printed: list[str] = []
    example.namespace[OUTPUT] = printed
    for command in parse_commands(example.parsed):
        status, got = run_gpt2(command)
        printed.append(got)
        if status != 0:
            return f"$ {command}\nexited {status}:\n{got}"
    return None


def evaluate_text(example: Any) -> str | None:
    printed = example.namespace.pop(OUTPUT, None)
    if printed is None:
        raise ValueError("a ```text block shows what the ```bash block right before it printed; there is none")
    got = "".join(printed)
    expected = example.parsed.strip("\n")
    if expected and not CHECKER.check_output(expected + "\n", got, FLAGS):
        return f"expected:\n{expected}\ngot:\n{got}"
    return None


def refuse_console(example: Any) -> str | None:
    raise ValueError(
        'a ```console block is shown, not run: put <!-- skip: next "why" --> before it, or make it ```bash'
    )


def setup(namespace: dict[str, Any]) -> None:
    """A fresh working directory for the chapter, with the repository's test data linked in."""
    work = Path(tempfile.mkdtemp(prefix="gpt2-guide-"))
    for relative in LINKED:
        (work / relative).parent.mkdir(parents=True, exist_ok=True)
        (work / relative).symlink_to(ROOT / relative, target_is_directory=True)
    namespace["__guide_state__"] = (Path.cwd(), os.environ.get("XDG_CACHE_HOME"), work, _torch_threads(1))
    os.environ["XDG_CACHE_HOME"] = str(work / ".cache")  # `gpt2 train`'s token cache
    os.chdir(work)


def teardown(namespace: dict[str, Any]) -> None:
    cwd, cache, work, threads = namespace.pop("__guide_state__")
    _torch_threads(threads)
    os.chdir(cwd)
    if cache is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = cache
    for value in namespace.values():  # engines with worker processes
        close = getattr(value, "close", None)
        if callable(close) and type(value).__name__.endswith("Engine"):
            close()
    shutil.rmtree(work, ignore_errors=True)


def _torch_threads(n: int | None) -> int | None:
    """Set PyTorch's thread count, returning the previous one (None: no PyTorch). The chapters'
    models are tiny, where one thread is as fast as two and does not fight the rest of the suite
    for cores; the numbers they assert do not depend on it."""
    try:
        import torch
    except ImportError:
        return None
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    return previous


CHAPTER = re.compile(r"\d\d-.*\.md$")


class _Unavailable(pytest.File):
    """A chapter, when Sybil is not installed: one item that says how to run it."""

    def collect(self) -> Iterator[pytest.Item]:
        yield _Skip.from_parent(self, name="chapter")


class _Skip(pytest.Item):
    def runtest(self) -> None:
        pytest.skip("the guide's blocks run with Sybil: pip install -e '.[docs]'")


def _collect_unavailable(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if CHAPTER.search(file_path.name):
        return _Unavailable.from_parent(parent, path=file_path)
    return None


pytest_collect_file: Callable[..., Any]
try:
    from sybil import Sybil
    from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser, SkipParser
except ImportError:  # the docs extra is not installed
    pytest_collect_file = _collect_unavailable
else:
    pytest_collect_file = Sybil(
        parsers=[
            PythonCodeBlockParser(),
            CodeBlockParser("bash", evaluate_bash),
            CodeBlockParser("text", evaluate_text),
            CodeBlockParser("console", refuse_console),
            SkipParser(),
        ],
        pattern="[0-9][0-9]-*.md",
        setup=setup,
        teardown=teardown,
    ).pytest()
