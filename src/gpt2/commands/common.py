"""What several subcommands share: the model and engine options, reading text, writing it.

Everything here is command-line plumbing (argparse, stdin, stdout, stderr); the
decisions themselves (which engines exist and what they accept, which tokenizer
a model uses) live in the library and are only looked up here.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

DEFAULT_MODEL = "gpt2"


# --- the model and the engine ----------------------------------------------------------------


def add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """--model, --engine, --device, --dtype, --threads."""
    from ..engines import ENGINES

    g = p.add_argument_group("model and engine")
    g.add_argument(
        "--model",
        "-m",
        default=DEFAULT_MODEL,
        help=f"hub name (gpt2, gpt2-medium, ...), directory or file (default {DEFAULT_MODEL})",
    )
    g.add_argument(
        "--engine",
        "-e",
        default=None,
        help=f"{' | '.join(ENGINES)} (default: the fastest installed)",
    )
    g.add_argument("--device", default=None, help="torch engine: cpu | cuda | mps (default: the best available)")
    dtypes = "; ".join(f"{name}: {' | '.join(spec.dtypes)}" for name, spec in ENGINES.items() if len(spec.dtypes) > 1)
    g.add_argument("--dtype", default=None, help=dtypes)
    g.add_argument(
        "--threads",
        type=int,
        default=None,
        help="numpy (needs threadpoolctl) and torch engines: compute threads (default: the library's)",
    )


def engine_name(args: argparse.Namespace) -> str:
    """The engine asked for (or the default), checked before any weights are read."""
    from ..engines import default_engine, require_engine

    return require_engine(args.engine or default_engine()).name


def engine_options(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """The engine's keyword options from the command line, checked against what it accepts."""
    from ..engines import ENGINES, engine_spec
    from ..errors import Gpt2Error

    spec = engine_spec(name)
    options: dict[str, Any] = {}
    for option in ("dtype", "device", "threads"):
        value = getattr(args, option, None)
        if value is None:
            continue
        if option not in spec.options:
            takers = " and ".join(n for n, s in ENGINES.items() if option in s.options)
            raise Gpt2Error(f"--{option} applies to the {takers} engines, not {name}")
        options[option] = value
    if "dtype" in options and options["dtype"] not in spec.dtypes:
        raise Gpt2Error(f"the {name} engine runs in {' | '.join(spec.dtypes)}, not {options['dtype']!r}")
    if options.get("threads") is not None and options["threads"] < 1:
        raise Gpt2Error(f"--threads must be >= 1, got {options['threads']}")
    return options


def open_engine(args: argparse.Namespace) -> Any:
    """Check the options, load the model (progress on stderr) and build the engine."""
    from ..engines import load_engine
    from ..weights import load_model
    from .progress import DownloadBar

    name = engine_name(args)
    options = engine_options(name, args)
    config, params = load_model(args.model, progress=DownloadBar(sys.stderr))
    if name == "pure" and config.num_parameters() >= 20_000_000:  # tens of seconds: say so
        print(
            f"laying out {config.num_parameters() / 1e6:.0f}M parameters as Python floats for the pure engine ...",
            file=sys.stderr,
            flush=True,
        )
    return load_engine(name, config, params, **options)


# --- reading and writing text ----------------------------------------------------------------


def read_stdin() -> str:
    """All of stdin as UTF-8 text, whatever the locale says; bytes that are not UTF-8
    are a clear error (a silent U+FFFD would change the ids)."""
    from ..tokenizer import TokenizerError

    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:  # already text (a StringIO in tests)
        return sys.stdin.read()
    data = stream.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TokenizerError(f"stdin is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


def words_or_stdin(parts: list[str]) -> str:
    """The text of a command's positional words, joined by spaces; none, or '-', reads stdin
    (on a terminal, saying so first)."""
    if not parts or parts == ["-"]:
        from .progress import is_terminal

        if is_terminal(sys.stdin):  # else a user waits on a silent command that waits on them
            print("reading the text from stdin (Ctrl-D on a new line ends it) ...", file=sys.stderr, flush=True)
        return sys.stdin.read()
    return " ".join(parts)


def write_text(text: str) -> None:
    """Write to stdout; where its encoding cannot show the text (PYTHONIOENCODING=ascii,
    a Latin-1 locale) write UTF-8 bytes rather than fail half-way with a traceback."""
    try:
        sys.stdout.write(text)
    except UnicodeEncodeError:
        sys.stdout.flush()
        sys.stdout.buffer.write(text.encode("utf-8"))
        sys.stdout.buffer.flush()


def plural(n: int, noun: str) -> str:
    """'1 token', '2 tokens'.

    >>> plural(1, "token"), plural(2, "token")
    ('1 token', '2 tokens')
    """
    return f"{n} {noun}{'s' * (n != 1)}"
