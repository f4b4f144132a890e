"""A griffe extension for the API reference: the package's docstrings as Markdown.

The docstrings are written as plain text (prose, indented tables, doctests, shape
comments such as `[T][C]`), not in Markdown, and mkdocstrings renders them as
Markdown. Two things would go wrong: a doctest's `>>>` is a nested block quote, and
`[T][C]` is a reference link (which `mkdocs build --strict` reports as broken). So,
before rendering, each doctest becomes a fenced `pycon` block and square brackets in
prose are escaped. Indented blocks are already Markdown code blocks and stay as they
are. Nothing in the package changes; this only shapes the site.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

PROMPT = re.compile(r"^\s*>>> ")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def escape_prose(line: str) -> str:
    """Escape [ and ] outside `code spans`."""
    out, last = [], 0
    for span in CODE_SPAN.finditer(line):
        out.append(line[last : span.start()].replace("[", r"\[").replace("]", r"\]"))
        out.append(span.group(0))
        last = span.end()
    out.append(line[last:].replace("[", r"\[").replace("]", r"\]"))
    return "".join(out)


def to_markdown(text: str) -> str:
    """Plain-text docstring -> Markdown (see the module docstring)."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    previous_blank = True
    in_indented = False
    while i < len(lines):
        line = lines[i]
        if PROMPT.match(line):  # a doctest: until the next blank line
            indent = len(line) - len(line.lstrip())
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i][indent:])
                i += 1
            if out and out[-1].strip():
                out.append("")
            out += ["```pycon", *block, "```", ""]
            previous_blank, in_indented = True, False
            continue
        if not line.strip():
            out.append(line)
            previous_blank = True
            i += 1
            continue
        if line.startswith("    ") and (previous_blank or in_indented):
            in_indented = True  # an indented code block: literal already
            out.append(line)
        else:
            in_indented = False
            out.append(escape_prose(line))
        previous_blank = False
        i += 1
    return "\n".join(out)


class PlainDocstrings(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
