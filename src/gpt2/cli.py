"""The `gpt2` command line: a thin dispatcher over one module per subcommand.

Each module in `gpt2.commands` defines `add_parser(subparsers)`, which registers
its subcommand and sets `run=` to a function taking the parsed arguments and
returning an exit status. Subcommands call typed library functions; the library
never prints. User mistakes arrive here as `Gpt2Error` and leave as one line on
stderr with exit status 2, never a traceback.

Every command also gets `-q/--quiet` and `-v/--verbose` here, and from nowhere else:
`--quiet` keeps stderr to errors (no progress, summary or warnings), `-v` adds
detail, and the traceback of an error. A command that sets `quiet_here=False` (train,
whose last line says where the model is) reads `args.quiet` and keeps itself quiet.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import io
import os
import sys
import traceback
from collections.abc import Sequence

from . import __version__
from .errors import Gpt2Error

# In the order `gpt2 --help` lists them.
COMMANDS = (
    "generate",
    "chat",
    "score",
    "tokenize",
    "detokenize",
    "info",
    "models",
    "convert",
    "train",
    "eval",
    "verify",
    "serve",
    "explore",
)


def build_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The `gpt2` parser and each subcommand's parser, by name."""
    from .commands.common import add_output_arguments

    parser = argparse.ArgumentParser(
        prog="gpt2",
        description="GPT-2 from first principles: generate, chat, score, tokenize, train, verify, serve, explore.",
    )
    parser.add_argument("--version", action="version", version=f"gpt2 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f".commands.{name.replace('-', '_')}", __package__)
        module.add_parser(sub)
    commands: dict[str, argparse.ArgumentParser] = dict(sub.choices)
    for command in commands.values():  # the output flags, defined once, for every command
        add_output_arguments(command)
        if command.get_default("quiet_here") is None:  # train keeps itself quiet: its last line still shows
            command.set_defaults(quiet_here=True)  # the dispatcher, not the command, keeps it quiet
    return parser, commands


def build_parser() -> argparse.ArgumentParser:
    return build_parsers()[0]


def subcommand_parser(parser: argparse.ArgumentParser, name: str | None) -> argparse.ArgumentParser:
    """The parser of subcommand `name` (the top-level parser if there is none)."""
    for action in parser._actions:  # argparse keeps its subparsers there, and nowhere public
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            found: argparse.ArgumentParser = action.choices[name]
            return found
    return parser


class _Discard(io.TextIOBase):
    """stderr under --quiet: nothing shows, and nothing thinks it is a terminal."""

    def write(self, text: str) -> int:
        return len(text)

    def isatty(self) -> bool:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the subcommand's parser, so that the message names it
        subcommand_parser(parser, args.command).error(f"unrecognized arguments: {' '.join(unknown)}")
    resolve = getattr(args, "resolve", None)
    if resolve is not None:  # a command that is another in some forms (generate -i is chat)
        args = resolve(args, {name: subcommand_parser(parser, name) for name in COMMANDS})
    if getattr(args, "run", None) is None:
        parser.print_help(sys.stderr)
        return 2
    stderr = sys.stderr
    if getattr(args, "quiet", False) and getattr(args, "quiet_here", False):
        sys.stderr = _Discard()
    try:
        if sys.stdout is None:  # started with stdout closed (`>&-`): output would be lost, or crash
            raise Gpt2Error("stdout is closed; redirect it (to /dev/null to discard the output)")
        status = int(args.run(args) or 0)
        # A file or pipe is block-buffered: a full disk behind stdout shows up at this flush,
        # where it can still be reported, not at interpreter exit as a traceback.
        sys.stdout.flush()
        return status
    except Gpt2Error as exc:
        sys.stderr = stderr
        if getattr(args, "verbose", 0):
            traceback.print_exc()
        _error(args.command, str(exc) + _packaged_hint(args, exc))
        return 2
    except KeyboardInterrupt:
        sys.stderr = stderr
        print(f"gpt2 {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `gpt2 generate ... | head`: the reader went away; that is not an error.
        _discard_stdout()
        return 0
    except OSError as exc:
        sys.stderr = stderr
        # The environment, not the user's input: stdout on a full device (/dev/full), an
        # I/O error, a file that vanished. One line, like every other error.
        if _stdout_is_broken() or (exc.filename is None and exc.errno in _WRITE_ERRORS):
            # Files the library writes are named in its own errors: a nameless write error is stdout.
            _discard_stdout()
            _error(args.command, f"cannot write the output: {exc.strerror or exc}")
        else:
            where = f" ({exc.filename})" if exc.filename else ""
            _error(args.command, f"{exc.strerror or exc}{where}")
        return 2
    finally:
        sys.stderr = stderr


_WRITE_ERRORS = {getattr(errno, n) for n in ("ENOSPC", "EIO", "EFBIG", "EDQUOT", "EPIPE", "EBADF") if hasattr(errno, n)}


def _packaged_hint(args: argparse.Namespace, exc: Gpt2Error) -> str:
    """How this command asks for the models that ship with the package, when the library says one
    would do (offline): `--model NAME` in most, `--init NAME` in train, the source in convert.

    >>> from gpt2.weights import ModelNotFound
    >>> exc = ModelNotFound("offline"); exc.packaged = ("gpt2-shakespeare",)
    >>> _packaged_hint(argparse.Namespace(), exc), _packaged_hint(argparse.Namespace(model_form="--init {}"), exc)
    (' (--model gpt2-shakespeare)', ' (--init gpt2-shakespeare)')
    """
    names = getattr(exc, "packaged", ()) or getattr(exc.__cause__, "packaged", ())
    if not names:
        return ""
    form = getattr(args, "model_form", "--model {}")
    return f" ({' or '.join(form.format(name) for name in names)})"


def _error(command: str, message: str) -> None:
    try:
        print(f"gpt2 {command}: error: {message}", file=sys.stderr)
    except (OSError, ValueError, AttributeError):
        pass  # stderr itself is gone: the exit status still says it


def _stdout_is_broken() -> bool:
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        return True
    return False


def _discard_stdout() -> None:
    """Point stdout's descriptor at /dev/null, so that the flush at interpreter exit of
    what is still buffered succeeds quietly instead of printing a second error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (a test's StringIO): nothing will be flushed at exit


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
