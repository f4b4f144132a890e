"""`gpt2 chat`: an interactive session that extends one running text, turn by turn.

    gpt2 chat                                   # type, the model continues; Ctrl-D ends
    gpt2 chat "Q: What is the capital of France?\\nA:" --stop '\\nQ:' -t 0.7 --seed 1
    gpt2 generate -i                            # the same

GPT-2 has no chat format and was never trained to answer: it continues text.
A session is one running text. What you type is appended to it as typed (`\\n`
is a newline; a line ending in `\\` goes on on the next line; an empty line lets
the model go on), then the model's continuation streams and is appended too,
stop string included (it is only cut from `gpt2 generate`'s output). The KV
cache is kept between turns, so a turn costs only the tokens it adds.

Commands: /reset (an empty text), /seed N, /temp X, /n N (tokens per reply),
/text (the running text), /help, /quit. After each reply a summary line
(tokens, tokens/s, how full the context window is, the seed) goes to stderr.
The work is `gpt2.generation.Session`; this module reads lines and prints.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from .common import (
    add_engine_arguments,
    engine_name,
    model_tokenizer,
    open_engine,
    plural,
    read_prompt_file,
    warn,
    write_text,
)
from .sampling import add_sampling_arguments, check_counts, generation_config, ineffective, unescape

HELP = """\
GPT-2 has no chat format: this session is one running text. What you type is appended as typed
(\\n is a newline, a line ending in \\ goes on, an empty line lets the model go on) and the model
continues it. Commands: /reset  /seed N  /temp X  /n N (tokens per reply)  /text  /help  /quit"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "chat",
        help="an interactive session: you and the model extend one text in turns",
        description=(
            "An interactive session that keeps extending one running text: what you type is appended, "
            "the model continues it, and its KV cache is kept between turns. GPT-2 has no chat format and "
            "does not answer as an assistant would: it continues text, so write the start of what you want "
            "(for example 'Q: ...\\nA:'). Lines starting with / are commands: /reset, /seed N, /temp X, "
            "/n N, /text, /help, /quit. Ctrl-C stops a reply, Ctrl-D ends the session."
        ),
    )
    p.add_argument("prompt", nargs="*", help="text to start the session with (words are joined by spaces)")
    p.add_argument(
        "--prompt-file",
        action="append",
        default=[],
        metavar="FILE",
        help="start the session with the text of FILE (UTF-8)",
    )
    add_engine_arguments(p)
    add_sampling_arguments(p, batches=False)
    p.set_defaults(run=run)


def check_options(args: argparse.Namespace) -> None:
    """Options that a session cannot use, said before any weights are read."""
    from ..errors import Gpt2Error

    if getattr(args, "show_probs", None) is not None:
        warn(args, "--show-probs has no effect in an interactive session (gpt2 generate shows them)")
        args.show_probs = None  # and costs nothing
    if len(args.prompt_file) > 1:
        raise Gpt2Error("an interactive session starts from one text: give --prompt-file once")
    if sys.stdin is None:  # started with stdin closed (`<&-`): there is no one to take turns with
        raise Gpt2Error("stdin is closed; a session reads your turns from it (gpt2 generate makes one reply)")


def read_lines(stream: TextIO, interactive: bool) -> Iterator[str]:
    """The user's turns: a line ending in a backslash continues on the next (joined by a newline).
    Off a terminal a line is bounded (`< /dev/zero` has none) and must be UTF-8."""
    from ..errors import Gpt2Error
    from ..tokenizer import TokenizerError
    from .text_input import MAX_TEXT_BYTES

    parts: list[str] = []
    while True:
        if interactive:
            try:
                line = input("... " if parts else "> ")
            except EOFError:  # Ctrl-D: the cursor is still after the prompt; end that line for the shell's
                write_text("\n")
                sys.stdout.flush()
                return
        else:
            try:
                line = stream.readline(MAX_TEXT_BYTES + 1)
            except UnicodeDecodeError as exc:
                raise TokenizerError(f"stdin is not UTF-8 text (byte 0x{exc.object[exc.start]:02x})") from None
            if not line:
                return
            if len(line) > MAX_TEXT_BYTES:
                raise Gpt2Error(f"a line on stdin is longer than {MAX_TEXT_BYTES:,} characters, the most gpt2 reads")
            line = line.rstrip("\n")
        if line.endswith("\\") and not line.endswith("\\\\"):
            parts.append(line[:-1])
            continue
        parts.append(line)
        yield "\n".join(parts)
        parts = []


def run(args: argparse.Namespace) -> int:
    from ..generation import Session

    check_options(args)
    check_counts(args)
    tokenizer = model_tokenizer(args)
    config = generation_config(args, tokenizer)
    for note in ineffective(args):
        warn(args, note)
    engine_name(args)  # fail fast, before any weights are read
    opening = " ".join(args.prompt) or (read_prompt_file(args.prompt_file[0]) if args.prompt_file else "")
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if interactive:
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
    engine = open_engine(args)
    try:
        session = Session(engine, config, tokenizer)
        if interactive:
            print(HELP, file=sys.stderr)
        if opening:
            write_text(unescape(opening))
            reply(session, unescape(opening), args)
        for line in read_lines(sys.stdin, interactive):
            if line.startswith("/"):
                if not command(session, line, args):
                    break
                continue
            if not interactive:  # a transcript: what was typed, then the reply
                write_text(unescape(line))
            reply(session, unescape(line), args)
    finally:
        engine.close()
    return 0


def reply(session: Any, text: str, args: argparse.Namespace) -> None:
    """One turn: the model's continuation streams to stdout, then the summary to stderr."""
    shown = []
    first = None
    try:
        for step in session.turn(text):
            if first is None:
                first = time.perf_counter()
            if step.text:
                write_text(step.text)
                sys.stdout.flush()
                shown.append(step.text)
    except KeyboardInterrupt:
        print(" [stopped]", file=sys.stderr)
    # the running text keeps what a stop string cut: show it, so that the screen is the text
    whole = session.tokenizer.decode(session.reply_ids)
    done = "".join(shown)
    if whole.startswith(done):
        write_text(whole[len(done) :])
    write_text("\n")
    sys.stdout.flush()
    end = time.perf_counter()
    n = len(session.reply_ids)
    rate = f", {(n - 1) / (end - first):.1f} tokens/s" if first is not None and n > 1 and end > first else ""
    window = session.engine.config.n_ctx
    print(
        f"[{plural(n, 'token')}{rate}, context {len(session.ids)}/{window}, seed {session.seed}]",
        file=sys.stderr,
        flush=True,
    )


def command(session: Any, line: str, args: argparse.Namespace) -> bool:
    """Run a /command; False ends the session. A bad command or value is said, not fatal."""
    from ..errors import Gpt2Error

    name, _, value = line.strip().partition(" ")
    value = value.strip()
    try:
        if name in ("/quit", "/exit", "/q"):
            return False
        if name == "/reset":
            session.reset()
            say("the text is empty again")
        elif name == "/seed":
            session.set_seed(_number(value, int, name))
            say(f"seed {session.seed}")
        elif name in ("/temp", "/temperature"):
            session.set(temperature=_number(value, float, name))
            say(f"temperature {session.config.temperature}")
        elif name == "/n":
            session.set(max_new_tokens=_number(value, int, name))
            say(f"{plural(session.config.max_new_tokens, 'token')} per reply")
        elif name == "/text":
            write_text(session.text + "\n")
        elif name == "/help":
            say(HELP)
        else:
            say(f"unknown command {name}; /help lists them")
    except Gpt2Error as exc:
        say(f"{name}: {exc}")
    return True


def _number(value: str, kind: type, name: str) -> Any:
    from ..errors import Gpt2Error

    try:
        return kind(value)
    except ValueError:
        raise Gpt2Error(f"expected a number, as in {name} {'42' if kind is int else '0.7'}") from None


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
