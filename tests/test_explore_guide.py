"""The explorer's own copy of the guide (/guide/NAME) and the media types of the page's modules,
through FastAPI's test client: no browser (tests/test_explore_browser.py follows the links in one)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("numpy")
pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from gpt2.explore.api import STATIC, explore_router  # noqa: E402
from gpt2.explore.explorer import Explorer  # noqa: E402
from gpt2.explore.guide import GUIDE, chapters, guide_page, render_markdown  # noqa: E402

LEARN = Path(__file__).resolve().parents[1] / "docs" / "learn"


@pytest.fixture(scope="module")
def client(explore_model):
    from fastapi import FastAPI

    m = explore_model
    explorer = Explorer(m.config, m.params, name="small", engine="numpy")
    app = FastAPI()
    app.include_router(explore_router(explorer))
    with TestClient(app) as c:
        yield c
    explorer.close()


def test_the_page_is_es_modules_served_as_javascript(client):
    page = client.get("/").text
    assert '<script type="module" src="/explore/static/main.js"></script>' in page
    modules = sorted(p.name for p in STATIC.glob("*.js"))
    assert "explore.js" not in modules and len(modules) >= 8
    for name in modules:
        answer = client.get(f"/explore/static/{name}")
        assert answer.status_code == 200 and answer.headers["content-type"] == "text/javascript; charset=utf-8", name
        assert "default-src 'self'" in answer.headers["content-security-policy"]
    assert client.get("/explore/static/explore.css").headers["content-type"] == "text/css; charset=utf-8"


def test_the_package_data_ships_every_file_of_the_page():
    """pyproject's package data names explore/static/* (a flat folder: no subfolder to forget)."""
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    assert '"explore/static/*"' in pyproject
    assert all(p.is_file() for p in STATIC.iterdir()), [p.name for p in STATIC.iterdir() if not p.is_file()]


def test_the_guide_is_served_from_the_clone(client):
    assert GUIDE == LEARN  # this test runs in a clone, where the guide is
    assert {"index", "01-tokens", "03-attention", "11-questions"} <= set(chapters())
    answer = client.get("/guide/11-questions")
    assert answer.status_code == 200 and answer.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in answer.headers["content-security-policy"]
    body = answer.text
    assert 'id="what-does-each-layer-predict-the-logit-lens"' in body  # the lens panel's anchor
    assert 'href="/#panel-lens"' in body  # back to this explorer, whatever its port
    assert "http://127.0.0.1:8000" not in body
    assert client.get("/guide").text == client.get("/guide/index").text
    raw = client.get("/guide/03-attention.md")
    assert raw.headers["content-type"] == "text/plain; charset=utf-8"
    assert raw.text == (LEARN / "03-attention.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["nothing", "03-attention.html", "%00", "conftest", "__init__"])
def test_a_chapter_that_is_not_there_is_a_page_that_says_so(client, name):
    answer = client.get(f"/guide/{name}")
    assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/html")
    assert "The guide is not here" in answer.text and "docs/learn/" in answer.text


@pytest.mark.parametrize(
    "path", ["/guide/..%2F..%2Fpyproject.toml", "/guide/../../pyproject.toml", "/guide/..%2Fconftest.py"]
)
def test_nothing_outside_the_chapters_is_served(client, path):
    answer = client.get(path)
    assert answer.status_code == 404 and "[build-system]" not in answer.text and "import" not in answer.text


def test_an_installed_package_without_the_guide_says_where_it_is(tmp_path):
    """From a wheel there is no docs/learn: every chapter's page says where the chapter lives."""
    status, media_type, body = guide_page("03-attention", tmp_path / "no-guide")
    assert status == 404 and media_type.startswith("text/html")
    assert "docs/learn/03-attention.md" in body and 'pip install -e ".[serve]"' in body
    assert guide_page("index", tmp_path / "no-guide")[0] == 404


def test_the_markdown_is_escaped_and_links_are_pointed_here():
    text = (
        "## A <script>alert(1)</script> heading\n\n"
        "Text with <b>tags</b>, `code <i>`, **bold**, *em*, [ch 2](02-embeddings.md#one-token),\n"
        "[panel](http://127.0.0.1:8000/#panel-next), [elsewhere](../engines.md), <https://example.org/x>.\n\n"
        "```python\nif a < b and c > d:\n    pass\n```\n\n"
        "| a | b |\n| --- | --- |\n| `1` | 2 |\n\n"
        "- one\n  more\n- two\n\n1. first\n2. second\n\n> quoted<br>\n> lines\n"
    )
    out = render_markdown(text)
    assert "<script>" not in out and "<b>" not in out and "&lt;b&gt;tags&lt;/b&gt;" in out
    assert '<h2 id="a-alert1-heading">' in out  # tags dropped from the anchor, as the site's toc does
    assert "<code>code &lt;i&gt;</code>" in out and "<strong>bold</strong>" in out and "<em>em</em>" in out
    assert '<a href="/guide/02-embeddings#one-token">ch 2</a>' in out
    assert '<a href="/#panel-next">panel</a>' in out
    assert "elsewhere <span" in out and "docs/engines.md" in out
    assert '<a href="https://example.org/x">' in out
    assert '<pre><code class="language-python">if a &lt; b and c &gt; d:\n    pass</code></pre>' in out
    assert "<th>a</th>" in out and "<td><code>1</code></td>" in out
    assert "<ul><li>one more</li><li>two</li></ul>" in out and "<ol><li>first</li><li>second</li></ol>" in out
    assert "<blockquote><p>quoted<br>\nlines</p></blockquote>" in out


def test_every_chapter_renders(client):
    for name in chapters():
        answer = client.get(f"/guide/{name}")
        assert answer.status_code == 200 and "<h1 id=" in answer.text, name
        assert "<pre><code" in answer.text or name == "index", name
