"""`gpt2 serve`: an OpenAI-compatible completion server with continuous batching.

    gpt2 serve                                    # GPT-2 124M at http://127.0.0.1:8080/v1
    gpt2 serve --model runs/tiny --engine torch --port 8100
    GPT2_API_KEY=secret gpt2 serve --host 0.0.0.0 # reachable from elsewhere: use a key

Clients call it as they call OpenAI (`openai.OpenAI(base_url="http://127.0.0.1:8080/v1",
api_key=...)`, curl, ...): `POST /v1/completions`, `POST /v1/chat/completions` (the
conversation written by a chat template, --chat-template), `GET /v1/models`, plus `/health`,
`/metrics`, `/tokenize`, `/detokenize`. The server listens at once and answers
/health with 503 until the model is loaded. One line per request goes to stderr.
See docs/server.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
from collections.abc import Mapping

from .common import add_engine_arguments, engine_plan

# 8080, as llama.cpp's server: the explorer keeps 8000 (the guide links to its panels there) and
# `mkdocs serve` 8001, so all three run side by side. ServerSettings.port is the same (a test checks).
DEFAULT_PORT = 8080


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the model over HTTP with OpenAI's completions and chat completions API",
        description=(
            "Serve a GPT-2 model with OpenAI's /v1/completions and /v1/chat/completions API (streaming, "
            "logprobs, echo, stop strings, seeds; chat through a chat template), continuous batching of "
            "concurrent requests, and safe defaults: 127.0.0.1 only, an optional API key, bounded bodies, "
            'prompts, queue and time. Needs the serve extra: pip install -e ".[serve]".'
        ),
    )
    add_engine_arguments(p)  # the engine by every command's rule (docs/index.md, "Defaults")
    net = p.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    net.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any free port)")
    net.add_argument(
        "--api-key",
        default=None,
        help="require this key (Authorization: Bearer KEY or X-Api-Key: KEY) on every route but /health "
        "(default: $GPT2_API_KEY, else none)",
    )
    net.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests sent to this host name (repeatable; .example.com: the domain and its names; "
        "* : any). Addresses, localhost and --host are always answered; other names are refused (DNS rebinding)",
    )
    net.add_argument("--served-model-name", default=None, metavar="NAME", help="the model name clients send")
    p.add_argument(
        "--chat-template",
        default=None,
        metavar="NAME|FILE",
        help="how /v1/chat/completions writes a conversation as a prompt: a built-in template (plain, chatml) or "
        "a Jinja file; given, it overrides the model directory's own (tokenizer_config.json's chat_template or "
        "chat_template.jinja). Default: the model's own, else plain (User:/Assistant: lines)",
    )
    lim = p.add_argument_group("limits")
    lim.add_argument("--max-batch", type=int, default=16, metavar="N", help="sequences decoded together (default 16)")
    lim.add_argument(
        "--max-queue", type=int, default=64, metavar="N", help="sequences waiting; more get 429 (default 64)"
    )
    lim.add_argument("--max-choices", type=int, default=16, metavar="N", help="prompts x n per request (default 16)")
    lim.add_argument(
        "--prefill-chunk",
        type=int,
        default=256,
        metavar="N",
        help="prefill a longer prompt N tokens a step, between the running streams' tokens, so that it never "
        "stalls them for its whole prefill (default 256)",
    )
    lim.add_argument("--max-tokens", type=int, default=None, metavar="N", help="max_tokens limit (default: n_ctx)")
    lim.add_argument("--max-prompt-tokens", type=int, default=None, metavar="N", help="longest prompt (default: n_ctx)")
    lim.add_argument(
        "--max-body-bytes", type=int, default=1 << 20, metavar="N", help="largest request body (default 1 MiB)"
    )
    lim.add_argument(
        "--timeout", type=float, default=600.0, metavar="S", help="time limit of a request in seconds (default 600)"
    )
    lim.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds a client has to send a request's head; then 408 and the connection closes (default 10)",
    )
    lim.add_argument(
        "--body-timeout", type=float, default=30.0, metavar="S", help="seconds for a request's body (default 30)"
    )
    lim.add_argument(
        "--max-connections",
        type=int,
        default=256,
        metavar="N",
        help="open connections; one more closes the one that has waited longest for a request (default 256)",
    )
    p.add_argument(
        "--log-prompts", action="store_true", help="write prompt text into the request log (off: sizes only)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import Gpt2Error
    from ..server.settings import ServerSettings

    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise Gpt2Error(f'gpt2 serve needs {" and ".join(missing)}: pip install -e ".[serve]"')
    plan = engine_plan(args, serving=True)  # every command's engine, with the kernel for batches; checked now
    if args.chat_template is not None:
        from ..chat_template import load_template

        load_template(args.chat_template)  # a missing file or bad Jinja: said now, before listening
    settings = ServerSettings(
        host=args.host,
        port=args.port,
        api_key=api_key(args.api_key, os.environ),
        allowed_hosts=tuple(args.allowed_host),
        max_body_bytes=args.max_body_bytes,
        max_tokens=args.max_tokens,
        max_prompt_tokens=args.max_prompt_tokens,
        max_batch=args.max_batch,
        max_queue=args.max_queue,
        max_choices=args.max_choices,
        prefill_chunk=args.prefill_chunk,
        request_timeout=args.timeout,
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        max_connections=args.max_connections,
        log_prompts=args.log_prompts,
        chat_template=args.chat_template,
    )
    _log_to_stderr()
    from ..server.run import serve
    from .progress import DownloadBar

    serve(
        args.model,
        plan.engine,
        settings,
        name=args.served_model_name,
        options=plan.keywords(),
        progress=DownloadBar(sys.stderr),
    )
    return 0


def api_key(given: str | None, environ: Mapping[str, str]) -> str | None:
    """The key from --api-key, else $GPT2_API_KEY, else None. An empty one is a mistake (an unset
    variable in a script), never a way to switch the key off: leave both out for no key.

    >>> api_key(None, {"GPT2_API_KEY": "s3"}), api_key("k", {}), api_key(None, {})
    ('s3', 'k', None)
    """
    from ..server.errors import ServerError
    from ..server.settings import API_KEY_ENV

    if given is not None:
        if not given.strip():
            raise ServerError("--api-key is empty: give a key, or leave the option out to serve without one")
        return given
    value = environ.get(API_KEY_ENV)
    if value is not None and not value.strip():
        raise ServerError(f"{API_KEY_ENV} is set but empty: set it to a key, or unset it to serve without one")
    return value


def _log_to_stderr() -> None:
    """The server's log (one line per request) and uvicorn's, on stderr with a timestamp."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    for logger_name in ("gpt2.server", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(logger_name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
