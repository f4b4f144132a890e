"""The guide as notebooks: every chapter of docs/learn/, converted with jupytext as its
index says (`jupytext --to ipynb docs/learn/[0-9]*.md`), runs top to bottom in a Jupyter
kernel, offline and without a GPU, as Sybil runs its blocks (docs/learn/conftest.py).

A notebook starts in docs/learn/; so does each one here, in a scratch copy of the
repository's layout (`docs/learn/`, and `tests/data` and `tests/fixtures` linked in),
so that what a chapter writes under `runs/` never lands in the checkout. The kernel
imports this checkout's source (PYTHONPATH), and its `%%bash` cells run this checkout's
`gpt2` (PATH and PYTHONPATH), with the network off: the Hugging Face hub offline, an
empty cache, and every HTTP proxy a closed port."""

from __future__ import annotations

import os
import re
import shutil
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
LEARN = ROOT / "docs" / "learn"
CHAPTERS = sorted(LEARN.glob("[0-9][0-9]-*.md"))
FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
CELL_TIMEOUT_S = 600  # per cell; the longest (chapter 8's training runs) take seconds
NO_NETWORK = "http://127.0.0.1:9"  # the discard port: nothing listens, a request fails at once
WHERE = "import gpt2; print('gpt2 from', gpt2.__file__)"  # a first cell: which gpt2 the kernel imports


def notebook_of(chapter: Path) -> Any:
    jupytext = pytest.importorskip("jupytext")
    return jupytext.reads(chapter.read_text(encoding="utf-8"), fmt="md")


def scratch_checkout(tmp_path: Path) -> Path:
    """The repository's layout as far as the guide reads it; its docs/learn/, where a notebook starts."""
    learn = tmp_path / "docs" / "learn"
    learn.mkdir(parents=True)
    for linked in ("tests/data", "tests/fixtures"):
        (tmp_path / linked).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / linked).symlink_to(ROOT / linked, target_is_directory=True)
    return learn


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """XDG_CACHE_HOME for every notebook here: the C kernels built once, the token cache, and
    an empty Hugging Face cache."""
    return tmp_path_factory.mktemp("cache")


def kernel_environment(cache: Path) -> dict[str, str]:
    """This checkout's source and scripts first; no network, no model but the packaged one."""
    scripts = os.pathsep.join(dict.fromkeys([sysconfig.get_path("scripts"), str(Path(sys.executable).parent)]))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
        "PATH": scripts + os.pathsep + os.environ.get("PATH", ""),
        "XDG_CACHE_HOME": str(cache),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",  # tiny models: one thread is as fast, and leaves the other cores to the suite
    }
    for name in ("HF_HOME", "HF_HUB_CACHE", "HF_ENDPOINT"):
        env.pop(name, None)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env[name] = NO_NETWORK
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    return env


def execute(notebook: Any, learn: Path, env: dict[str, str]) -> list[str]:
    """Run the notebook in a fresh kernel started in `learn`; what each code cell printed."""
    pytest.importorskip("ipykernel")
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")

    notebook.cells.insert(0, nbformat.v4.new_code_cell(WHERE))
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(learn)}},
    )
    client.execute(env=env)  # raises CellExecutionError at the first cell that fails
    printed = []
    for cell in notebook.cells:
        if cell.cell_type == "code":
            outputs = cell.get("outputs", [])
            assert not [out for out in outputs if out.get("output_type") == "error"], cell.source
            printed.append("".join(out.get("text", "") for out in outputs if out.get("output_type") == "stream"))
    del notebook.cells[0]
    assert printed[0].strip() == f"gpt2 from {ROOT / 'src' / 'gpt2' / '__init__.py'}", printed[0]
    return printed[1:]


def code_blocks(chapter: Path) -> list[tuple[str, str]]:
    """The chapter's blocks that are notebook cells: (language, body)."""
    return [
        (language, body)
        for language, body in FENCE.findall(chapter.read_text(encoding="utf-8"))
        if language in ("python", "bash")
    ]


# --- the conversion ------------------------------------------------------------------------------------


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_every_chapter_converts_to_a_notebook_with_its_commands_as_cells(chapter):
    """```python blocks become code cells, ```bash blocks `%%bash` cells (run as commands), in
    order; ```text (what a command prints) and ```console (shown, not run) stay text."""
    nbformat = pytest.importorskip("nbformat")
    notebook = notebook_of(chapter)
    nbformat.validate(notebook)
    assert notebook.metadata["kernelspec"]["name"] == "python3"  # the header, hidden in a comment: not bash
    cells = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    expected = [
        ("%%bash\n" if language == "bash" else "") + body.rstrip("\n") for language, body in code_blocks(chapter)
    ]
    assert cells == expected
    text = "".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    assert text.count("```console") == chapter.read_text(encoding="utf-8").count("```console")


def test_a_chapter_with_commands_runs_as_a_notebook(tmp_path, cache):
    """Chapter 1 (Python cells and `%%bash` cells running `gpt2`), top to bottom in a kernel:
    the quick suite's notebook. Every chapter runs so with --slow (below)."""
    pytest.importorskip("tiktoken")
    if shutil.which("bash") is None:
        pytest.skip("the notebooks' command cells are %%bash cells")
    chapter = LEARN / "01-tokens.md"
    printed = execute(notebook_of(chapter), scratch_checkout(tmp_path), kernel_environment(cache))
    cells = code_blocks(chapter)
    commands = {body.strip(): out for (language, body), out in zip(cells, printed) if language == "bash"}
    assert commands['gpt2 tokenize "The tokenizer\'s job"'].startswith("464 11241 7509 338 1693\n")
    assert commands["gpt2 detokenize 15496 995"].strip() == "Hello world"


def test_a_failing_command_cell_stops_the_notebook(tmp_path, cache):
    """A command that fails fails its `%%bash` cell, and the notebook, as a failing block fails Sybil."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    if shutil.which("bash") is None:
        pytest.skip("the notebooks' command cells are %%bash cells")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("%%bash\ngpt2 detokenize 99999999")])
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="exit status 2"):
        execute(notebook, scratch_checkout(tmp_path), kernel_environment(cache))


# --- every chapter -------------------------------------------------------------------------------------

# The chapters with cells that cannot run offline on a CPU, and say so: the reason they print.
SKIPPED = {
    "05-the-model-and-weights.md": "skipped: downloads 500 MB from the Hugging Face hub",
    "11-questions.md": "skipped: needs an Apple GPU",
}


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_every_chapter_runs_as_a_notebook(chapter, tmp_path, cache):
    """The chapter as a notebook, top to bottom, offline and on the CPU."""
    pytest.importorskip("torch")
    pytest.importorskip("tiktoken")
    if shutil.which("bash") is None:
        pytest.skip("the notebooks' command cells are %%bash cells")
    started = time.perf_counter()
    printed = execute(notebook_of(chapter), scratch_checkout(tmp_path), kernel_environment(cache))
    print(f"{chapter.name}: {time.perf_counter() - started:.1f} s")
    if chapter.name in SKIPPED:
        assert any(out.startswith(SKIPPED[chapter.name]) for out in printed), SKIPPED[chapter.name]


# What a chapter writes under runs/: `--out runs/X` and convert's `runs/X`, and the run
# directory of a train() call; and what its first cell removes, so that it runs again.
WRITES = re.compile(r'--out (runs/[\w.-]+)|gpt2 convert \S+ (runs/[\w.-]+)|train\([^,]+,\s*(?:RUNS|runs) / "([\w.-]+)"')
CLEARED = re.compile(r'"(runs/[\w.-]+)"')


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_a_chapter_runs_again_where_it_ran(chapter):
    """Running a notebook again is what readers do; `gpt2 train` refuses an --out that holds a
    run and `gpt2 convert` one that holds a model, so the chapter's first cell removes every
    run directory the chapter writes. (Each chapter ran twice in a row when this was written.)"""
    cells = code_blocks(chapter)
    written = {
        path if path.startswith("runs/") else f"runs/{path}"
        for _, body in cells
        for match in WRITES.finditer(body)
        for path in match.groups()
        if path
    }
    if not written:
        return
    first = next(body for language, body in cells if language == "python")
    assert "os.chdir(" in first and "shutil.rmtree" in first, "the first cell must move to the root and clear runs/"
    assert written <= set(CLEARED.findall(first)), sorted(written - set(CLEARED.findall(first)))
