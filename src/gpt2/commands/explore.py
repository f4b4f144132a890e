"""`gpt2 explore`: watch GPT-2 think, from bytes to the next token, in a local web page.

    gpt2 explore                              # GPT-2 124M, the fastest engine, port 8000
    gpt2 explore -m gpt2-shakespeare          # the model that ships with the package: no download
    gpt2 explore --model runs/tiny --engine pure --port 8100 --no-browser

Starts a server on 127.0.0.1 (never another interface) with the explorer's page and its
JSON API (docs/explorer.md), and opens the page in the browser. Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

from .common import add_engine_arguments, engine_name, engine_options

# The explorer's port: the guide's chapters link to its panels here (http://127.0.0.1:8000/#panel-...);
# `gpt2 serve` takes 8080 and `mkdocs serve` 8001, so the three run side by side. Its model is every
# command's default (docs/index.md, "Defaults").
DEFAULT_PORT = 8000
NEEDS = ("fastapi", "uvicorn", "numpy")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explore",
        help="watch GPT-2 think in a local web page: tokens, attention, logit lens, next token",
        description=(
            "Start a local server (127.0.0.1 only) with the explorer: the tokenizer's merges, every layer's and "
            "head's attention, the logit lens, the next-token distribution under temperature, top-k and top-p, "
            "the embeddings, the code behind each view, and three engines side by side. Opens the page in "
            "the browser; Ctrl-C stops the server."
        ),
    )
    add_engine_arguments(p)
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer pages that call the server by this host name (repeatable). Addresses and localhost "
        "are always answered; other names are refused, so that no web page can reach the server by DNS rebinding",
    )
    p.add_argument("--no-browser", action="store_true", help="do not open the page in a browser")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import EngineUnavailable, Gpt2Error

    missing = [name for name in NEEDS if importlib.util.find_spec(name) is None]
    if missing:
        raise EngineUnavailable(f'the explorer needs {", ".join(missing)}: pip install -e ".[serve]"')
    if not 0 <= args.port <= 65535:
        raise Gpt2Error(f"--port must be in [0, 65535], got {args.port}")
    name = engine_name(args)  # fail fast, before reading weights
    options = engine_options(name, args)
    if "quantize" in options:  # the lens and the embeddings views read the float weights themselves
        raise Gpt2Error("gpt2 explore shows the model's own float weights: --quantize is for generate, score and serve")

    from ..explore.app import create_app, serve
    from ..explore.explorer import Explorer
    from ..tokenizer import Tokenizer
    from ..weights import load_model
    from .progress import DownloadBar

    config, params = load_model(args.model, progress=DownloadBar(sys.stderr))
    explorer = Explorer(
        config, params, Tokenizer.for_model(args.model), name=str(args.model), engine=name, engine_options=options
    )
    try:
        if name == "pure" and config.num_parameters() >= 20_000_000:
            print(
                f"laying out {config.num_parameters() / 1e6:.0f}M parameters for the pure engine ...", file=sys.stderr
            )
        explorer.engine()  # build the default engine now, not on the page's first request

        def ready(url: str) -> None:
            print(
                f"gpt2 explore: {args.model} on the {name} engine at {url} (Ctrl-C stops)", file=sys.stderr, flush=True
            )
            if not args.no_browser:
                import webbrowser

                webbrowser.open(url)

        try:
            serve(create_app(explorer, allowed_hosts=tuple(args.allowed_host)), args.port, on_ready=ready)
        except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it shut down on: that is how it stops
            pass
        print("gpt2 explore: stopped", file=sys.stderr)
    finally:
        explorer.close()
    return 0
