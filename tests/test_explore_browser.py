"""The explorer's page in a real browser: Playwright driving Debian's Chromium against a live server
on 127.0.0.1. Playwright cannot download its own browser here, so the tests use the system's
(`apt-get install -y chromium`) and skip, saying so, where it is missing."""

from __future__ import annotations

import shutil
import socket
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
    explorer = Explorer(m.config, m.params, name="small", engine="numpy")
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
        return self.page.locator("#tokens .token").all_text_contents()


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


def test_every_panel_shows_a_link_to_its_chapter(page):
    """The guide links are visible in each panel's header and lead to chapters that exist (the
    site itself, `mkdocs serve` on 127.0.0.1:8001, is not running here: links are not followed)."""
    learn = Path(__file__).resolve().parents[1] / "docs" / "learn"
    for name in PANELS:
        link = page.page.locator(f"#panel-{name} h2 a.guide")
        assert link.count() == 1 and link.is_visible(), name
        href = link.get_attribute("href") or ""
        assert href.startswith("http://127.0.0.1:8001/learn/"), (name, href)
        chapter = href.removeprefix("http://127.0.0.1:8001/learn/").split("/")[0]
        assert (learn / f"{chapter}.md").is_file(), (name, href)
        assert link.inner_text().startswith("guide: chapter "), name
    assert not [url for url in page.requests if ":8001" in url]  # shown, never fetched


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
