"""The guide's chapters (docs/learn/*.md), served by the explorer itself at /guide/NAME.

Each panel of the page links to the chapter that explains it. The explorer serves those
chapters from the same address as the page, so the links work whenever the page does, on any
port, with no second server (`mkdocs serve` still builds the full site). A chapter is rendered
from its Markdown with the small subset the chapters use (headings with the anchors the site
uses, paragraphs, lists, block quotes, tables, fenced code, inline code, emphasis, links);
`/guide/NAME.md` answers the Markdown itself. Links between chapters stay in /guide/, and links
to the explorer's panels (http://127.0.0.1:8000/#panel-...) go to this explorer, whatever its port.

The chapters are not part of the installed package: they are found beside the package's source
in a clone of the repository (an editable install, or `gpt2` run from `src/`). Anywhere else a
chapter's page says where the chapter is instead of failing.

>>> print(render_markdown("# 3. Attention\\n\\nSee [chapter 2](02-embeddings.md) and `q @ k`."))
<h1 id="3-attention">3. Attention</h1>
<p>See <a href="/guide/02-embeddings">chapter 2</a> and <code>q @ k</code>.</p>
>>> slug("What does each layer predict? (the logit lens)")
'what-does-each-layer-predict-the-logit-lens'
"""

from __future__ import annotations

import html
import posixpath
import re
import unicodedata
from pathlib import Path
from typing import Any

__all__ = ["GUIDE", "add_guide_routes", "chapters", "guide_page", "render_markdown", "slug"]

# src/gpt2/explore/guide.py -> the repository root, where docs/learn is in a clone
GUIDE = Path(__file__).resolve().parents[3] / "docs" / "learn"
STYLESHEET = "/explore/static/guide.css"


def chapters(directory: Path = GUIDE) -> dict[str, Path]:
    """The guide's chapters by name (`03-attention`, `index`), or {} where there is no guide."""
    if not directory.is_dir():
        return {}
    return {p.stem: p for p in sorted(directory.glob("*.md")) if p.is_file()}


def guide_page(name: str, directory: Path = GUIDE) -> tuple[int, str, str]:
    """(status, media type, body) of /guide/NAME: a chapter as HTML, NAME.md as its Markdown,
    or a page that says where the chapter lives (404) where this installation has no guide."""
    raw = name.endswith(".md")
    stem = name[:-3] if raw else (name or "index")
    found = chapters(directory).get(stem)
    if found is None:
        where = f"docs/learn/{stem}.md" if re.fullmatch(r"[\w-]{1,80}", stem) else "docs/learn/"
        body = (
            f"<h1>The guide is not here</h1><p>This chapter is <code>{html.escape(where)}</code> in the "
            "project's repository. The guide is not part of the installed package: <code>gpt2 explore</code> "
            'serves its chapters when it runs from a clone (<code>pip install -e ".[serve]"</code>), and '
            "<code>mkdocs serve</code> in the clone builds the whole site.</p>"
            '<p><a href="/">back to the explorer</a></p>'
        )
        return 404, "text/html; charset=utf-8", _document("guide: not found", body)
    text = found.read_text(encoding="utf-8")
    if raw:
        return 200, "text/plain; charset=utf-8", text
    title = next((line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("# ")), stem)
    nav = '<nav class="guide-nav"><a href="/">the explorer</a> · <a href="/guide/index">the guide</a> · '
    nav += f'<a href="/guide/{html.escape(stem)}.md">this chapter as Markdown</a></nav>'
    return 200, "text/html; charset=utf-8", _document(title, nav + render_markdown(text))


def _document(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{html.escape(title)}</title><link rel="icon" href="data:,">'
        f'<link rel="stylesheet" href="{STYLESHEET}"></head>\n<body><main class="guide">{body}</main></body></html>\n'
    )


def slug(heading: str) -> str:
    """A heading's anchor, as the site's table of contents (Python-Markdown's toc) makes it."""
    text = re.sub(r"<[^>]+>", "", heading).replace("`", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


_FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")
_LIST = re.compile(r"^(\s*)([-*+]|\d+\.)\s+(.*)")


def render_markdown(text: str) -> str:
    """HTML for the Markdown the chapters use (see the module docstring); everything is escaped."""
    lines = text.splitlines()
    if lines and lines[0].strip() == "---":  # front matter (jupytext's header): not shown
        end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), 0)
        lines = lines[end + 1 :]
    text = re.sub(r"<!--.*?-->", "", "\n".join(lines), flags=re.DOTALL)
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            marker, language = fence.group(1), fence.group(2)
            code = []
            i += 1
            while i < len(lines) and not lines[i].startswith(marker):
                code.append(lines[i])
                i += 1
            cls = f' class="language-{language}"' if language else ""
            out.append(f"<pre><code{cls}>{html.escape(chr(10).join(code))}</code></pre>")
            i += 1
        elif not line.strip():
            i += 1
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            title = line[level:].strip()
            out.append(f'<h{min(level, 6)} id="{slug(title)}">{_inline(title)}</h{min(level, 6)}>')
            i += 1
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            body = [r for r in rows if not all(re.fullmatch(r":?-+:?", c) for c in r)]
            head, rest = (body[0], body[1:]) if body else ([], [])
            cells = "".join(f"<th>{_inline(c)}</th>" for c in head)
            trs = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rest)
            out.append(f"<table><thead><tr>{cells}</tr></thead><tbody>{trs}</tbody></table>")
        elif line.startswith(">"):
            quoted = []
            while i < len(lines) and lines[i].startswith(">"):
                quoted.append(lines[i][1:].strip())
                i += 1
            out.append(f"<blockquote><p>{_inline(chr(10).join(quoted))}</p></blockquote>")
        elif (first := _LIST.match(line)) is not None:
            ordered = first.group(2)[0].isdigit()
            items: list[str] = []
            while i < len(lines) and (_LIST.match(lines[i]) or (lines[i].startswith("  ") and items)):
                item = _LIST.match(lines[i])
                if item and not item.group(1):
                    items.append(item.group(3))
                else:
                    items[-1] += " " + lines[i].strip()
                i += 1
            tag = "ol" if ordered else "ul"
            out.append(f"<{tag}>" + "".join(f"<li>{_inline(item)}</li>" for item in items) + f"</{tag}>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not _starts_block(lines[i]):
                para.append(lines[i].strip())
                i += 1
            out.append(f"<p>{_inline(chr(10).join(para))}</p>")
    return "\n".join(out)


def _starts_block(line: str) -> bool:
    return bool(_FENCE.match(line) or line.startswith(("#", "|", ">")) or _LIST.match(line))


def _inline(text: str) -> str:
    """Inline Markdown: code spans first (nothing inside them is markup), then images, links,
    emphasis and <br>, on escaped text."""
    codes: list[str] = []

    def keep(match: re.Match[str]) -> str:
        codes.append(f"<code>{html.escape(match.group(1))}</code>")
        return f"\x00{len(codes) - 1}\x00"

    text = re.sub(r"`([^`]+)`", keep, text)
    text = html.escape(text, quote=True)
    text = re.sub(
        r"!\[([^\]]*)\]\(([^)\s]+)\)",
        lambda m: f'<em class="figure">[figure: {m.group(1)}; {m.group(2)} in the repository]</em>',
        text,
    )
    text = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", lambda m: _link(m.group(1), m.group(2)), text)
    text = re.sub(r"&lt;(https?://[^\s&]+)&gt;", lambda m: _link(m.group(1), m.group(1)), text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text, flags=re.DOTALL)
    text = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", text, flags=re.DOTALL)
    text = text.replace("&lt;br&gt;", "<br>")
    return re.sub(r"\x00(\d+)\x00", lambda m: codes[int(m.group(1))], text)


def _link(label: str, target: str) -> str:
    """A link of a chapter, pointed where it works from this server: another chapter under
    /guide/, a panel of this explorer, a web address as it is; another file of the repository
    (../engines.md) is named, not linked."""
    target = html.unescape(target)
    page, _, anchor = target.partition("#")
    anchor = f"#{anchor}" if anchor else ""
    panel = re.fullmatch(r"https?://(?:127\.0\.0\.1|localhost):8000/?(#panel-[\w-]+)?", target)
    if panel:
        href = "/" + (panel.group(1) or "")
    elif re.fullmatch(r"[\w-]+\.md", page):
        href = f"/guide/{page[:-3]}{anchor}"
    elif not page and anchor:
        href = anchor
    elif re.match(r"https?://", target):
        href = target
    else:
        path = html.escape(posixpath.normpath(posixpath.join("docs/learn", page)))
        return f'{label} <span class="muted">({path} in the repository)</span>'
    return f'<a href="{html.escape(href, quote=True)}">{label}</a>'


def add_guide_routes(router: Any, headers: dict[str, str]) -> None:
    """GET /guide and /guide/NAME on a FastAPI router, with `headers` (the page's security policy)."""
    from fastapi.responses import Response

    def guide(name: str = "index") -> Response:  # a plain def: FastAPI runs it off the event loop
        status, media_type, body = guide_page(name)
        return Response(body.encode("utf-8"), status_code=status, media_type=media_type, headers=headers)

    router.add_api_route("/guide", guide, methods=["GET"], include_in_schema=False)
    router.add_api_route("/guide/{name}", guide, methods=["GET"], include_in_schema=False)
