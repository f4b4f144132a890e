"""What several subcommands share: the model and engine options, reading text, writing it.

Everything here is command-line plumbing (argparse, stdin, stdout, stderr); the
decisions themselves (which engines exist and what they accept, which tokenizer
a model uses) live in the library and are only looked up here.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import Any

DEFAULT_MODEL = "gpt2"
DEVICES = ("auto", "cpu", "cuda", "mps")  # `cuda:N` too, for the PyTorch engine


# --- options every command shares ---------------------------------------------------------------


def add_model_argument(p: argparse.ArgumentParser | Any, help: str | None = None) -> None:
    """-m/--model, with the same default in every command that takes a model."""
    p.add_argument(
        "--model",
        "-m",
        default=DEFAULT_MODEL,
        metavar="MODEL",
        help=help or f"hub name (gpt2, gpt2-medium, ...), directory or file (default {DEFAULT_MODEL})",
    )


def add_device_argument(p: argparse.ArgumentParser | Any, help: str | None = None) -> None:
    """--device, with the same values and default everywhere."""
    p.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help=help
        or "auto | cpu | cuda | cuda:N | mps (default auto: a CUDA GPU when there is one, else the CPU); "
        "cuda and mps run the PyTorch engine",
    )


def add_output_arguments(p: argparse.ArgumentParser) -> None:
    """-q/--quiet and -v/--verbose, which `gpt2.cli` gives every command (see there for what they do)."""
    g = p.add_argument_group("output")
    g.add_argument(
        "--quiet", "-q", action="store_true", help="only the result and errors: no progress, summary or warnings"
    )
    g.add_argument(
        "--verbose",
        "-v",
        action="count",
        default=0,
        help="say more: what was loaded from where and how long it took; an error's traceback",
    )


def add_json_argument(p: argparse.ArgumentParser | Any, what: str = "one JSON object") -> None:
    """--json, in every command whose result has a shape: the same flag, saying what it prints."""
    p.add_argument("--json", action="store_true", help=f"print {what}")


def warn(args: argparse.Namespace, message: str) -> None:
    """A one-line warning on stderr: `gpt2 CMD: warning: ...` (silenced by --quiet)."""
    print(f"gpt2 {args.command}: warning: {message}", file=sys.stderr, flush=True)


def detail(args: argparse.Namespace, message: str) -> None:
    """A line on stderr shown only with -v."""
    if getattr(args, "verbose", 0):
        print(message, file=sys.stderr, flush=True)


# --- the model and the engine ----------------------------------------------------------------


def add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """--model, --engine, --device, --dtype, --quantize, --threads."""
    from ..engines import ENGINES
    from ..weights.quantized import SCHEMES

    g = p.add_argument_group("model and engine")
    add_model_argument(g)
    g.add_argument(
        "--engine",
        "-e",
        default=None,
        help=f"{' | '.join(ENGINES)} (default: torch on a CUDA GPU, else the fastest installed)",
    )
    add_device_argument(g)
    dtypes = "; ".join(f"{name}: {' | '.join(spec.dtypes)}" for name, spec in ENGINES.items() if len(spec.dtypes) > 1)
    g.add_argument("--dtype", default=None, help=f"{dtypes} (docs/precision.md: which engine for which precision)")
    g.add_argument(
        "--quantize",
        default=None,
        choices=SCHEMES,
        help="int8: quantize the weights as they load (every engine; the torch engine multiplies in int8)",
    )
    g.add_argument(
        "--threads",
        type=int,
        default=None,
        help="numpy (needs threadpoolctl) and torch engines: compute threads (default: the library's)",
    )
    add_n_head_argument(g)


def add_n_head_argument(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--n-head: the head count, which no tensor shape shows (needed without a config.json)."""
    p.add_argument(
        "--n-head",
        type=int,
        default=None,
        metavar="N",
        help="attention heads, for weights without a config.json (otherwise guessed from the width, with a warning)",
    )


@contextlib.contextmanager
def download_progress() -> Iterator[Any]:
    """A download progress bar on stderr whose line is ended when the block ends, whatever
    happens: an error after a half-drawn bar starts on a line of its own."""
    from .progress import DownloadBar

    bar = DownloadBar(sys.stderr)
    try:
        yield bar
    finally:
        with contextlib.suppress(OSError, ValueError):
            bar.close()  # ends a half-drawn terminal line; a log has none to end


def load_model_for(args: argparse.Namespace, source: str) -> Any:
    """`gpt2.weights.open_model` with a progress bar and --n-head; warns on stderr when the
    head count had to be guessed. Returns the `LoadedModel`."""
    from ..weights import open_model

    with download_progress() as progress:
        loaded = open_model(source, progress=progress, n_head=getattr(args, "n_head", None))
    if loaded.n_head_guessed:
        warn(args, f"{loaded.guess_warning}; pass --n-head N, or put a config.json beside the weights")
    return loaded


def engine_plan(args: argparse.Namespace, *, serving: bool = False) -> Any:
    """The engine the command line asks for, planned and checked before any weights are read
    (`gpt2.engines.plan_engine`): --device cuda or mps means the PyTorch engine; with --device
    auto a CUDA GPU does too; `serving` prefers the engine and kernel that batch best."""
    from ..engines import plan_engine

    return plan_engine(
        getattr(args, "engine", None) or None,
        dtype=getattr(args, "dtype", None),
        quantize=getattr(args, "quantize", None),
        device=getattr(args, "device", None),
        threads=getattr(args, "threads", None),
        serving=serving,
        flags="--",
    )


def engine_name(args: argparse.Namespace) -> str:
    """The engine asked for (or the default), checked before any weights are read."""
    return str(engine_plan(args).engine)


def engine_options(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """The engine's `load_engine` keywords from the command line (see `engine_plan`)."""
    plan = engine_plan(args)
    if plan.engine != name:  # the caller runs another engine than the command line names
        from ..engines import plan_engine

        plan = plan_engine(name, **plan.keywords())
    return dict(plan.keywords())


def open_engine(args: argparse.Namespace) -> Any:
    """Check the options, load the model (progress on stderr) and build the engine."""
    import time

    from ..engines import build_engine

    plan = engine_plan(args)
    start = time.perf_counter()
    model = load_model_for(args, args.model)
    config, params = model.config, model.params
    loaded = time.perf_counter()
    detail(
        args,
        f"{args.model}: {config.num_parameters() / 1e6:.1f}M parameters, n_layer={config.n_layer} "
        f"n_embd={config.n_embd} n_head={config.n_head} n_ctx={config.n_ctx}, read in {loaded - start:.2f} s",
    )
    if plan.engine == "pure" and config.num_parameters() >= 20_000_000:  # tens of seconds: say so
        print(
            f"laying out {config.num_parameters() / 1e6:.0f}M parameters as Python floats for the pure engine ...",
            file=sys.stderr,
            flush=True,
        )
    engine = build_engine(plan, config, params)
    for notice in engine.notices:  # what the engine chose, worth knowing
        print(f"gpt2 {getattr(args, 'command', '')}: note: {notice}", file=sys.stderr)
    described = ", ".join(f"{k}={v}" for k, v in plan.keywords().items())
    ready = time.perf_counter() - loaded
    detail(args, f"{plan.engine} engine{f' ({described})' if described else ''} ready in {ready:.2f} s")
    for line in engine.details():  # how it computes on this machine (the NumPy engine's C kernels)
        detail(args, line)
    return engine


def model_tokenizer(args: argparse.Namespace) -> Any:
    """The tokenizer of --model: the vocabulary files in its directory, else GPT-2's."""
    from ..tokenizer import Tokenizer

    return Tokenizer.for_model(args.model)


# --- reading and writing text ----------------------------------------------------------------


def read_stdin() -> str:
    """All of stdin as UTF-8 text, whatever the locale says; bytes that are not UTF-8
    are a clear error (a silent U+FFFD would change the ids), and so are a closed or
    unreadable stdin, one larger than any text (`< /dev/zero`) and, off a terminal, one
    that stays silent past the deadline (see `gpt2.commands.text_input`)."""
    from ..errors import Gpt2Error
    from .progress import is_terminal
    from .text_input import decode_utf8, read_stdin_bytes

    if sys.stdin is None:  # started with stdin closed (`<&-`)
        raise Gpt2Error("stdin is closed; give the text as an argument, or redirect stdin from a file")
    terminal = is_terminal(sys.stdin)
    if terminal:  # else a user waits on a silent command that waits on them
        print("reading the text from stdin (Ctrl-D on a new line ends it) ...", file=sys.stderr, flush=True)
    try:
        data = read_stdin_bytes(terminal)
    except OSError as exc:
        raise Gpt2Error(f"cannot read stdin: {exc.strerror or exc}") from None
    return data if isinstance(data, str) else decode_utf8(data, "stdin")


def read_prompt_file(path: str) -> str:
    """The text of a --prompt-file: a regular UTF-8 file of bounded size (a FIFO, a device or a
    directory is a one-line error, never a wait; see `gpt2.commands.text_input`)."""
    from .text_input import read_text_file

    return read_text_file(path, "the prompt file")


def words_or_stdin(parts: list[str]) -> str:
    """The text of a command's positional words, joined by spaces; none, or '-', reads stdin
    (on a terminal, saying so first).
    Either way the text must be UTF-8, as `gpt2 tokenize` requires (see read_stdin)."""
    if not parts or parts == ["-"]:
        return read_stdin()
    return check_utf8_argument(" ".join(parts), "the text")


def check_utf8_argument(text: str, what: str) -> str:
    """Words from the command line: bytes that were not UTF-8 arrive as lone surrogates
    (Python's surrogateescape); refuse them as stdin's are refused.

    >>> check_utf8_argument("caf\\udce9", "the prompt")
    Traceback (most recent call last):
    ...
    gpt2.tokenizer.errors.TokenizerError: the prompt is not valid UTF-8 (byte 0xe9 at character 3)
    """
    from ..tokenizer import TokenizerError

    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        shown = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
        raise TokenizerError(f"{what} is not valid UTF-8 ({shown} at character {exc.start})") from None
    return text


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
