"""The guide (docs/learn/) as a whole: its shape, the harness that runs its blocks, its notebooks
and its site. The blocks themselves run as tests of their own (docs/learn/conftest.py, Sybil)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
LEARN = ROOT / "docs" / "learn"
CHAPTERS = sorted(LEARN.glob("[0-9][0-9]-*.md"))
FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
SKIP = re.compile(r"<!-- skip: next (.*?) -->\s*\n\s*\n?```", re.DOTALL)


def harness():
    """docs/learn/conftest.py, imported as a module of its own."""
    spec = importlib.util.spec_from_file_location("guide_harness", LEARN / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the chapters' shape -------------------------------------------------------------------------------


def test_thirteen_chapters_in_order_in_the_index_and_the_site():
    assert [p.name[:2] for p in CHAPTERS] == [f"{i:02d}" for i in range(13)]
    index = (LEARN / "index.md").read_text(encoding="utf-8")
    site = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for chapter in CHAPTERS:
        assert f"]({chapter.name})" in index, chapter.name
        assert f"learn/{chapter.name}" in site, chapter.name


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_chapter_states_its_assumptions_and_has_checked_exercises(chapter):
    text = chapter.read_text(encoding="utf-8")
    assert "**What this chapter assumes.**" in text
    exercises = text.split("\n## Exercises\n", 1)
    assert len(exercises) == 2, "no Exercises section"
    numbered = re.findall(r"^(\d)\. \*\*", exercises[1], re.MULTILINE)
    assert numbered == [str(i) for i in range(1, len(numbered) + 1)] and len(numbered) >= 2
    solutions = re.findall(r"`(tests/guide_solutions/ch\d\d_\w+\.py)`", exercises[1])
    assert len(solutions) == 1 and solutions[0].startswith(f"tests/guide_solutions/ch{chapter.name[:2]}_")
    assert (ROOT / solutions[0]).is_file()


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_every_block_runs_or_says_why_not(chapter):
    """Every block runs both here (Sybil) and in the chapter's notebook: ```python (a cell),
    ```bash (gpt2 commands; a `%%bash` cell), ```text right after a ```bash block (what it
    prints, checked here), or ```console, a command for a terminal that neither runs, marked
    with its reason."""
    h = harness()
    text = chapter.read_text(encoding="utf-8")
    blocks = list(FENCE.finditer(text))
    assert blocks, "a chapter without code"
    assert {block[1] for block in blocks} <= {"python", "bash", "text", "console"}
    for reason in SKIP.findall(text):
        assert re.fullmatch(r'"[^"]{10,}"', reason), f"a skip needs a reason in quotes: {reason!r}"
    assert text.count("<!-- skip:") == len(SKIP.findall(text)), "a skip marker not directly before a block"
    skipped = {marker.end() - 3 for marker in SKIP.finditer(text)}  # where the blocks marked skip start
    for previous, block in zip([None, *blocks], blocks):
        language, body = block[1], block[2]
        if language == "bash":
            commands = h.parse_commands(body)
            assert commands and all(c.startswith("gpt2 ") for c in commands), body
        elif language == "text":
            assert previous is not None and previous[1] == "bash", f"a ```text block not after a ```bash one: {body!r}"
            assert not text[previous.end() : block.start()].strip(), "text between a command and its output"
        elif language == "console":
            assert block.start() in skipped, f"a ```console block not marked skip: {body!r}"
            assert [line for line in body.splitlines() if line.startswith("$ ")], "a console block without a command"
        assert language == "console" or block.start() not in skipped, (
            "only ```console blocks are skipped; a ```python block that cannot run here prints why and runs anyway"
        )


def test_the_guide_is_linked_from_the_site_home():
    home = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    assert "(learn/index.md)" in home and "(learn/00-quick-start.md)" in home


# --- the explorer ---------------------------------------------------------------------------------------

EXPLORER_PAGE = ROOT / "src" / "gpt2" / "explore" / "static" / "index.html"
PANEL = re.compile(r'<section class="panel" id="(panel-[a-z]+)">\s*<h2>(.*?)</h2>', re.DOTALL)
GUIDE_LINK = re.compile(r'<a class="guide" href="/guide/(\d\d-[a-z-]+)(?:#([a-z0-9-]+))?"')
PANEL_LINK = re.compile(r"\(http://127\.0\.0\.1:8000/#(panel-[a-z]+)\)")


def heading_slugs(text: str) -> set[str]:
    """The anchors mkdocs gives a page's headings (its default slugify: lower case, words
    joined by hyphens, other characters dropped)."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL), re.MULTILINE)
    return {re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", h).strip().lower()) for h in headings}


def test_every_explorer_panel_links_to_its_chapter_and_back():
    """Each panel's header links to a chapter that exists (served by the explorer itself at
    /guide/NAME), and each panel is linked from some chapter."""
    page = EXPLORER_PAGE.read_text(encoding="utf-8")
    panels = dict(PANEL.findall(page))
    assert len(panels) == 7, sorted(panels)
    for panel, header in panels.items():
        match = GUIDE_LINK.search(header)
        assert match, f"{panel}: no guide link in its header"
        chapter = LEARN / f"{match[1]}.md"
        assert chapter.is_file(), (panel, chapter.name)
        if match[2]:
            assert match[2] in heading_slugs(chapter.read_text(encoding="utf-8")), (panel, match[2])
    linked = {panel for chapter in CHAPTERS for panel in PANEL_LINK.findall(chapter.read_text(encoding="utf-8"))}
    assert linked == set(panels), (sorted(linked), sorted(panels))
    site = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert re.search(r"^dev_addr: 127\.0\.0\.1:8001$", site, re.MULTILINE)


# --- the harness ---------------------------------------------------------------------------------------


def test_command_blocks_are_parsed_into_commands():
    h = harness()
    source = "gpt2 tokenize hi \\\n    --json\n\n# a comment\ngpt2 detokenize 15496\n"
    assert h.parse_commands(source) == ["gpt2 tokenize hi  --json", "gpt2 detokenize 15496"]


def test_command_blocks_fail_on_wrong_output_errors_and_other_commands():
    h = harness()
    namespace: dict = {}

    def run(commands: str, printed: str | None = None) -> str | None:
        failed = h.evaluate_bash(SimpleNamespace(parsed=commands, namespace=namespace))
        if failed or printed is None:
            return failed
        return h.evaluate_text(SimpleNamespace(parsed=printed, namespace=namespace))

    assert run("gpt2 detokenize 15496 995\n", "Hello world\n") is None
    assert run("gpt2 detokenize 15496 995\n", "Hello ...\n") is None  # ... stands for any text
    assert "expected:" in run("gpt2 detokenize 15496 995\n", "Goodbye world\n")
    assert "exited 2" in run("gpt2 detokenize 99999999\n")
    with pytest.raises(ValueError, match="only gpt2 commands"):
        run("pip install gpt2\n")
    with pytest.raises(ValueError, match="there is none"):  # an output block with no command before it
        h.evaluate_text(SimpleNamespace(parsed="Hello\n", namespace={}))
    with pytest.raises(ValueError, match="shown, not run"):
        h.refuse_console(SimpleNamespace(parsed="$ gpt2 serve\n", namespace={}))


def test_broken_blocks_fail_and_skipped_blocks_skip(pytester_guide):
    chapter = (
        "```python\nassert 1 + 1 == 3\n```\n\n"
        '<!-- skip: next "starts a server" -->\n\n```console\n$ gpt2 serve\n```\n\n'
        "```bash\ngpt2 detokenize 15496\n```\n\n```text\nGoodbye\n```\n\n"
        "```bash\ngpt2 detokenize 15496\n```\n\n```text\nHello\n```\n\n"
        "```console\n$ gpt2 serve\n```\n\n"
        "```python\nassert 1 + 1 == 2\n```\n"
    )
    result = pytester_guide(chapter)
    assert result.returncode == 1
    # the skip marker is an item too; a console block without one fails
    assert "3 failed, 5 passed, 1 skipped" in result.stdout, result.stdout[-2000:]


@pytest.fixture
def pytester_guide(tmp_path):
    """Run the harness on a one-chapter guide in a scratch directory; pytest's result."""
    pytest.importorskip("sybil")

    def run(chapter: str):
        learn = tmp_path / "docs" / "learn"
        learn.mkdir(parents=True, exist_ok=True)
        (learn / "conftest.py").write_text((LEARN / "conftest.py").read_text(encoding="utf-8"), encoding="utf-8")
        (learn / "00-test.md").write_text(chapter, encoding="utf-8")
        for linked in ("tests/data", "tests/fixtures"):  # what the harness links into a chapter's directory
            (tmp_path / linked).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / linked).symlink_to(ROOT / linked, target_is_directory=True)
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(learn)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        )

    return run


# --- the site ------------------------------------------------------------------------------------------


def test_the_site_builds_strictly(tmp_path):
    """`mkdocs build --strict`: the guide, the docs pages and the API reference, no broken link."""
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        pytest.importorskip(module)
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    site = tmp_path / "site"
    for page in ("learn/03-attention/index.html", "reference/engines/index.html", "tokenizer/index.html"):
        assert (site / page).is_file(), page
    assert "multi_head_attention" in (site / "reference/engines/index.html").read_text(encoding="utf-8")
