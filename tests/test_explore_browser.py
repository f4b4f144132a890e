"""The explorer's page in a real browser: Playwright driving Debian's Chromium against a live server
on 127.0.0.1. Playwright cannot download its own browser here, so the tests use the system's
(`apt-get install -y chromium`) and skip, saying so, where it is missing."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("numpy")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed: pip install playwright (the test extra has it)"
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("Debian's Chromium is not installed: apt-get install -y chromium", allow_module_level=True)

import uvicorn  # noqa: E402

from gpt2.explore.app import create_app  # noqa: E402
from gpt2.explore.explorer import Explorer  # noqa: E402
from gpt2.tokenizer import Tokenizer  # noqa: E402

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 60_000  # the longest any one wait may take, on a loaded machine
PANELS = ("tokens", "next", "attention", "lens", "embeddings", "code", "engines")


@pytest.fixture(scope="module")
def server(explore_model):
    m = explore_model
    # named by its directory, so that the page's `gpt2 generate` line runs as it is shown
    explorer = Explorer(m.config, m.params, name=str(m.directory), engine="numpy")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(create_app(explorer), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start in 60 s"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=30)
    sock.close()
    explorer.close()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Page:
    """A fresh page on the explorer, with what it logged and every request it made."""

    def __init__(self, browser, base: str) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(base + "/")
        self.settle(1)

    def settle(self, traced: int) -> None:
        """Wait until `traced` traces have been drawn and no request is in flight."""
        self.page.wait_for_function(
            "(n) => Number(document.body.dataset.traced || 0) >= n && document.body.dataset.pending === '0'",
            arg=traced,
        )

    def traced(self) -> int:
        return int(self.page.locator("body").get_attribute("data-traced") or 0)

    def tokens(self) -> list[str]:
        """The tokens' texts (a newline token is drawn as ↵ and a line break; this is its text)."""
        return self.page.locator("#tokens .token").evaluate_all("(spans) => spans.map((s) => s.dataset.text)")

    def retype(self, text: str) -> None:
        """Replace the prompt with `text` and wait for its trace."""
        before = self.traced()
        self.page.fill("#prompt", text)
        self.settle(before + 1)


@pytest.fixture
def page(browser, server):
    p = Page(browser, server)
    yield p
    p.context.close()


def test_the_page_loads_without_errors_or_requests_elsewhere(page, server):
    assert page.page.title() == "gpt2 explore"
    assert page.tokens(), "the first prompt was not traced"
    page.page.wait_for_function("() => document.getElementById('source').textContent.length > 0")
    assert page.errors == []
    assert page.requests and all(url.startswith(server + "/") or url.startswith("data:") for url in page.requests), [
        url for url in page.requests if not url.startswith(server)
    ]


def test_the_script_is_es_modules_served_as_javascript(page, server):
    """issue 19: the page's script is native ES modules (one per panel and a core), loaded from the
    package with JavaScript's media type; every module loads and none logs an error."""
    static = Path(__file__).resolve().parents[1] / "src" / "gpt2" / "explore" / "static"
    modules = sorted(p.name for p in static.glob("*.js"))
    assert {"core.js", "main.js", "tokens.js", "next.js", "attention.js", "lens.js", "engines.js"} <= set(modules)
    assert page.page.locator('script[type="module"]').count() == 1
    assert page.page.locator("script:not([type=module])").count() == 0
    loaded = {url.rsplit("/", 1)[-1] for url in page.requests if "/explore/static/" in url and url.endswith(".js")}
    assert loaded == set(modules)  # main.js imports every one of them
    for name in modules:
        answer = page.page.request.get(f"{server}/explore/static/{name}")
        assert answer.ok and answer.headers["content-type"] == "text/javascript; charset=utf-8", name
    assert page.errors == []


def test_every_panel_links_to_its_chapter_served_by_the_explorer(page, server):
    """issue 21: each panel's "guide: chapter N" link opens the chapter from the explorer itself (no
    second server), with the anchor it names."""
    learn = Path(__file__).resolve().parents[1] / "docs" / "learn"
    for name in PANELS:
        link = page.page.locator(f"#panel-{name} h2 a.guide")
        assert link.count() == 1 and link.is_visible(), name
        assert link.inner_text().startswith("guide: chapter "), name
        href = link.get_attribute("href") or ""
        assert href.startswith("/guide/"), (name, href)
        chapter, _, anchor = href.removeprefix("/guide/").partition("#")
        assert (learn / f"{chapter}.md").is_file(), (name, href)
        answer = page.page.request.get(server + href)
        assert answer.ok and answer.headers["content-type"].startswith("text/html"), (name, href)
        body = answer.text()
        assert "<h1" in body and "<pre><code" in body, name
        if anchor:
            assert f'id="{anchor}"' in body, (name, anchor)
    with page.context.expect_page() as opened:  # follow one: it opens in a new tab
        page.page.locator("#panel-attention h2 a.guide").click()
    guide = opened.value
    guide.wait_for_load_state()
    assert guide.locator("h1").inner_text().startswith("3. Attention")
    assert guide.locator('a[href="/#panel-attention"]').count() >= 1  # the chapter links back to this explorer
    raw = page.page.request.get(server + "/guide/03-attention.md")
    assert raw.text() == (learn / "03-attention.md").read_text(encoding="utf-8")


def test_typing_a_prompt_shows_its_tokens(page):
    tok = Tokenizer.gpt2()
    text = "Hello world, hello moon: naïve"
    before = page.traced()
    page.page.fill("#prompt", "")
    page.page.type("#prompt", text)
    page.settle(before + 1)
    page.page.wait_for_function(
        "(n) => document.querySelectorAll('#tokens .token').length === n", arg=len(tok.encode(text))
    )
    page.settle(page.traced())
    assert page.tokens() == [
        tok.decode_single_token_bytes(i).decode("utf-8", "backslashreplace") for i in tok.encode(text)
    ]
    assert page.errors == []


def test_stepping_three_times_adds_three_tokens(page):
    start = len(page.tokens())
    for n in range(1, 4):
        before = page.traced()
        page.page.click("#step")
        page.settle(before + 1)
        assert len(page.tokens()) == start + n
    assert page.page.locator("#tokens .token.generated").count() == 3
    assert "-n 3" in page.page.locator("#command").text_content()  # the same tokens from gpt2 generate
    page.page.click("#back")
    assert len(page.tokens()) == start + 2
    page.page.click("#forward")
    assert len(page.tokens()) == start + 3
    before = page.traced()
    page.page.locator("#bars .bar-row").nth(1).click()  # branch: append the second candidate
    page.settle(before + 1)
    assert len(page.tokens()) == start + 4
    assert page.page.locator("#forward").is_disabled()
    assert page.errors == []


def test_the_attention_grid_has_a_cell_per_layer_and_head(page, explore_model):
    c = explore_model.config
    assert page.page.locator("#attn-grid canvas.attn-cell").count() == c.n_layer * c.n_head
    page.page.locator("#attn-grid canvas.attn-cell").nth(c.n_head + 1).click()  # layer 1, head 1
    assert "layer 1, head 1" in page.page.locator("#zoom-title").text_content()
    page.page.locator("#zoom").click(position={"x": 90, "y": 436})  # the last query, the first key
    value = page.page.locator("#zoom-value").text_content()
    assert value.startswith(f"query {len(page.tokens()) - 1} ") and "→ key 0 " in value
    assert page.page.locator("#head-view line").count() > 0
    assert page.errors == []


def test_the_logit_lens_has_a_row_per_layer(page, explore_model):
    rows = page.page.locator("#lens tr.lens-row")
    assert rows.count() == explore_model.config.n_layer
    assert rows.nth(0).locator("td").count() == len(page.tokens()) + 1  # the label, then a cell per position


def test_moving_the_temperature_changes_the_bars(page):
    def widths() -> list[str]:
        return page.page.locator("#bars .bar-row .bar").evaluate_all("(bars) => bars.map((b) => b.style.width)")

    before = widths()
    page.page.focus("#temperature")
    with page.page.expect_response(lambda r: r.url.endswith("/api/next")) as answer:
        for _ in range(14):  # 1.00 -> 0.30, as a keyboard user moves the slider
            page.page.keyboard.press("ArrowLeft")
    assert answer.value.ok
    page.page.wait_for_function("() => document.body.dataset.pending === '0'")
    page.page.wait_for_function("() => document.getElementById('arithmetic').textContent.includes('temperature 0.30')")
    assert page.page.locator("#temperature-value").text_content() == "0.30"
    assert widths() != before
    assert page.errors == []


def test_a_screenshot_of_each_view(page, tmp_path):
    page.page.click("#compare")
    page.page.wait_for_function("() => document.querySelectorAll('#engines-table tr').length > 1")
    page.page.wait_for_function("() => document.getElementById('largest').textContent.startsWith('Largest')")
    page.page.click("#panel-attention .fn")  # a panel's function name shows its source
    page.page.wait_for_function("() => document.getElementById('source').textContent.includes('def ')")
    assert "attend" in page.page.locator("#source-name").input_value()
    for name in PANELS:
        path = tmp_path / f"explore-{name}.png"
        page.page.locator(f"#panel-{name}").screenshot(path=str(path))
        data = Path(path).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, name
    page.page.screenshot(path=str(tmp_path / "explore-page.png"), full_page=True)
    assert page.errors == []


def test_a_newline_token_has_a_width_and_can_be_hovered(page):
    """issue 21: the first prompt's newline is a token (id 198) with a visible mark and a width."""
    newline = page.page.locator("#tokens .token").nth(page.tokens().index("\n"))
    box = newline.bounding_box()
    assert box is not None and box["width"] > 4 and box["height"] > 4
    newline.hover()
    tip = page.page.locator("#tooltip")
    assert tip.is_visible() and "id 198" in tip.inner_text()
    assert "↵" in newline.inner_text()
    assert page.errors == []


def test_the_zoom_follows_the_layer_selector(page, explore_model):
    """issue 21: choosing a layer zooms into that layer (the same head), and clicking a heatmap of
    another layer selects that layer."""
    c = explore_model.config
    assert "layer 0, head 0" in page.page.locator("#zoom-title").text_content()
    page.page.select_option("#layer", str(c.n_layer - 1))
    assert f"layer {c.n_layer - 1}, head 0" in page.page.locator("#zoom-title").text_content()
    page.page.locator(f'#attn-grid canvas[data-layer="0"][data-head="{c.n_head - 1}"]').click()
    assert page.page.locator("#layer").input_value() == "0"
    assert f"layer 0, head {c.n_head - 1}" in page.page.locator("#zoom-title").text_content()
    page.page.select_option("#layer", "1")
    assert f"layer 1, head {c.n_head - 1}" in page.page.locator("#zoom-title").text_content()
    assert page.page.locator(".attn-cell.selected").get_attribute("data-layer") == "1"
    assert page.errors == []


def stale(page, panel: str) -> bool:
    return "stale" in (page.page.locator(f"#panel-{panel}").get_attribute("class") or "")


def test_old_numbers_are_marked_after_a_new_prompt_or_an_error(page):
    """issue 21: after a new prompt the three-engines table says it is for another sequence; after
    a failed trace every panel that still shows the previous sequence says so; a good trace clears
    the marks, and going back to the compared sequence shows its comparison as current again."""
    page.page.click("#compare")
    page.page.wait_for_function("() => document.getElementById('largest').textContent.startsWith('Largest')")
    assert not stale(page, "engines")
    page.retype("JULIET:\nO Romeo, Romeo!")
    assert stale(page, "engines")
    note = page.page.locator("#panel-engines .stale-note")
    assert note.is_visible() and "another sequence" in note.inner_text()
    assert not any(stale(page, p) for p in ("tokens", "next", "attention", "lens"))

    page.page.fill("#prompt", "x " * 200)  # over the trace limit: the server refuses it
    page.page.wait_for_function("() => document.getElementById('status').classList.contains('error')")
    page.page.wait_for_function("() => document.body.dataset.pending === '0'")
    for panel in ("tokens", "next", "attention", "lens"):
        assert stale(page, panel), panel
        assert "last request failed" in page.page.locator(f"#panel-{panel} .stale-note").inner_text()
    assert "".join(page.tokens()).startswith("JULIET:")  # the previous sequence, marked as such

    page.retype("ROMEO:\nBut soft, what light through yonder window breaks?")
    assert not any(stale(page, p) for p in ("tokens", "next", "attention", "lens"))
    assert not stale(page, "engines")  # the same ids as the comparison again
    assert page.page.locator(".stale-note").count() == 0
    errors = [e for e in page.errors if "400" not in e]  # the refused trace logs its 400
    assert errors == []


def test_the_largest_difference_is_the_outlined_cell_and_says_it_is_relative(page):
    """issue 21: the headline ranks by relative difference and says so; the table shows absolute and
    relative differences, and the headline's cell is the one outlined."""
    page.page.click("#compare")
    page.page.wait_for_function("() => document.getElementById('largest').textContent.startsWith('Largest')")
    headline = page.page.locator("#largest").inner_text()
    assert headline.startswith("Largest relative difference: ")
    cell = page.page.locator("#engines-table td.largest-cell")
    assert cell.count() == 1
    rel = cell.locator(".rel").inner_text()  # "rel 1.23e-7"
    assert rel.startswith("rel ") and rel in headline
    assert cell.locator(".abs").inner_text() in headline
    assert "relative" in page.page.locator("#engines-table caption").inner_text()
    # the largest of every relative cell in the table is the outlined one
    rels = page.page.locator("#engines-table td.diff .rel").all_inner_texts()
    assert max(float(r.removeprefix("rel ")) for r in rels) == float(rel.removeprefix("rel "))
    assert page.errors == []


def test_the_residual_norm_chart_has_axis_titles_and_a_scale_note(page):
    titles = page.page.locator("#norms text.axis-title").all_text_contents()
    assert len(titles) == 2 and any("log scale" in t for t in titles) and any("block" in t for t in titles)
    assert page.page.locator("#norms text.tick").count() > 2
    assert "Logarithmic" in page.page.locator("#norms-note").inner_text()


def test_a_three_line_prompt_is_not_clipped(page):
    text = "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun."
    page.retype(text)
    size = page.page.locator("#prompt").evaluate("(box) => [box.scrollHeight, box.clientHeight]")
    assert size[0] <= size[1], size
    page.retype(text + "\n" * 4 + "Arise, fair sun.")  # seven lines: the box grows again
    size = page.page.locator("#prompt").evaluate("(box) => [box.scrollHeight, box.clientHeight]")
    assert size[0] <= size[1], size


# Prompts that a shell, a page or a copy can change: newlines (the bug), quotes, backslashes, `!`,
# `$`, backquotes, a leading dash, tabs, CR, invisible and non-ASCII characters.
AWKWARD_PROMPTS = [
    "ROMEO:\nBut soft",
    "ends with a newline\n",
    "\n\nstarts with two",
    'it\'s "quoted" and \\back\\slashed\\',
    "bang! $HOME `date` $(date) ${x} %s \\n",
    "-n 5 --model gpt2",
    "tab\there\r\nCRLF",
    "naïve café — 日本語 🎉",
    "no\u00a0break\u200bzero width\u2028line separator\ufeff",
    "'",
    "\\",
]


def test_the_command_line_quoting_gives_back_the_prompt_in_bash(page):
    """issue 20: the quoted prompt, pasted into bash, is the page's prompt byte for byte, and the
    whole line is one line (the page cannot collapse a newline of it)."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    quoted = page.page.evaluate(
        "async (texts) => { const m = await import('/explore/static/shell.js');"
        ' return texts.map((t) => [m.bashQuote(t), m.generateCommand({text: t, model: "my model\'s",'
        " engine: 'numpy', seed: 7, n: 3, temperature: 0.8, top_k: 40, top_p: 1})]); }",
        AWKWARD_PROMPTS,
    )
    for text, (word, line) in zip(AWKWARD_PROMPTS, quoted, strict=True):
        assert "\n" not in word and "\n" not in line and "\r" not in line, word
        out = subprocess.run([bash, "-c", f"printf %s {word}"], capture_output=True, timeout=30, check=True)
        assert out.stdout == text.encode("utf-8"), (text, word)
        # the whole line, with `gpt2` replaced by a function that prints its arguments
        script = "gpt2() { printf '%s\\0' \"$@\"; }; " + line
        out = subprocess.run([bash, "-c", script], capture_output=True, timeout=30, check=True)
        args = out.stdout.decode("utf-8").split("\0")[:-1]
        assert args[:3] == ["generate", "--model", "my model's"] and args[-2:] == ["--", text], (text, args)
    assert page.errors == []


def test_the_command_line_gives_the_pages_tokens(page):
    """issue 20, end to end: a prompt with a newline and quotes, three sampled steps, then the
    page's `gpt2 generate` line run by bash: the same prompt ids and the same three tokens."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    page.retype('ROMEO:\nIt\'s "soft" \\ naïve!')
    page.page.fill("#seed", "7")
    for _ in range(3):
        before = page.traced()
        page.page.click("#step")
        page.settle(before + 1)
    line = page.page.locator("#command code").inner_text()
    assert line.startswith("gpt2 generate ") and "\n" not in line
    ids = page.page.evaluate("() => document.getElementById('token-ids').textContent")
    ids = json.loads(ids.removeprefix("ids: "))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    command = line.replace("gpt2 generate ", f"{sys.executable} -m gpt2 generate --json -q ", 1)
    out = subprocess.run([bash, "-c", command], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    sample = json.loads(out.stdout)["samples"][0]
    assert sample["prompt_ids"] + sample["ids"] == ids
    assert page.errors == []
