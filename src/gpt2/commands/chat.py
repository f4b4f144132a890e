"""`gpt2 chat`: an interactive conversation with the model, turn by turn.

    gpt2 chat                                   # type, the model replies; Ctrl-D ends
    gpt2 chat --system "You are a poet." -t 0.7 --seed 1
    gpt2 chat --chat-template chatml -m runs/tuned
    gpt2 chat --raw "Q: What is the capital of France?\\nA:" --stop '\\nQ:'   # one running text
    gpt2 generate -i                            # the same as gpt2 chat

Each line you type is a user message. The conversation is written as one prompt
by a chat template, exactly as `gpt2 serve`'s /v1/chat/completions writes it
(`--chat-template NAME|FILE`, else the model directory's own template, else
`plain`: `User:`/`Assistant:` lines; see docs/server.md), and the model's reply
stops where the template says the turn ends. When the conversation outgrows the
context, the oldest messages are dropped and the session says which. GPT-2 was
never trained to chat: base models continue the text rather than answer.

`--raw` keeps the older session: one running text; what you type is appended to
it as typed (`\\n` is a newline; an empty line lets the model go on), the model's
continuation too, stop string included, and the KV cache is kept between turns.

Either way a line ending in `\\` goes on on the next line. Commands: /reset, /seed N,
/temp X, /n N (tokens per reply), /text (the conversation's prompt, or the running
text), /help, /quit. After each reply a summary line (tokens, tokens/s, how full the
context window is, the seed) goes to stderr. The work is
`gpt2.generation.conversation.Conversation` (`Session` for --raw); this module reads lines and prints.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
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

HELP_RAW = """\
One running text (--raw): what you type is appended as typed (\\n is a newline, a line ending in \\
goes on, an empty line lets the model go on) and the model continues it.
Commands: /reset  /seed N  /temp X  /n N (tokens per reply)  /text  /help  /quit"""
HELP = """\
Each line is your message (a line ending in \\ goes on); the {template} chat template writes the
conversation as the model's prompt (GPT-2 continues text: expect a continuation more than an answer).
Commands: /reset  /seed N  /temp X  /n N (tokens per reply)  /text (the prompt)  /help  /quit"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "chat",
        help="an interactive conversation with the model, written by a chat template",
        description=(
            "An interactive conversation: each line you type is a user message, the conversation is written "
            "as one prompt by a chat template exactly as gpt2 serve's /v1/chat/completions writes it "
            "(--chat-template, else the model's own, else plain User:/Assistant: lines), and the model "
            "replies. Base GPT-2 was never trained to chat and continues the text rather than answer. When "
            "the conversation outgrows the context the oldest messages are dropped, and the session says "
            "which. --raw: one running text extended in turns instead. Lines starting with / are commands: "
            "/reset, /seed N, /temp X, /n N, /text, /help, /quit. Ctrl-C stops a reply, Ctrl-D ends the session."
        ),
    )
    p.add_argument("prompt", nargs="*", help="the first message (words are joined by spaces)")
    p.add_argument(
        "--chat-template",
        default=None,
        metavar="NAME|FILE",
        help="the chat template: a built-in (plain, chatml) or a Jinja file; it overrides the model directory's "
        "own. Default: the model's own (tokenizer_config.json, chat_template.jinja), else plain",
    )
    p.add_argument("--system", default=None, metavar="TEXT", help="a system message that opens the conversation")
    p.add_argument(
        "--raw",
        action="store_true",
        help="no template: one running text that you and the model extend in turns (KV cache kept)",
    )
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
    raw = getattr(args, "raw", False)
    if raw and getattr(args, "chat_template", None) is not None:
        raise Gpt2Error("--chat-template writes a conversation; --raw has none (leave one out)")
    if raw and getattr(args, "system", None) is not None:
        raise Gpt2Error("--system opens a conversation; --raw has none (write it into the text instead)")
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
    raw = getattr(args, "raw", False)
    template = None
    if not raw:
        from ..chat_template import model_directory, resolve_template

        template = resolve_template(model_directory(args.model), getattr(args, "chat_template", None))
    engine = open_engine(args)
    try:
        turn: Callable[[Any, str, argparse.Namespace], None]
        if template is None:
            session: Any = Session(engine, config, tokenizer)
            turn = reply
            help_text = HELP_RAW
        else:
            from ..generation.conversation import Conversation

            session = Conversation(engine, config, tokenizer, template, system=getattr(args, "system", None))
            turn = chat_reply
            help_text = HELP.format(template=template.describe())
        if interactive:
            print(help_text, file=sys.stderr)
        if opening:
            write_text(unescape(opening) + ("" if raw else "\n"))
            turn(session, unescape(opening), args)
        for line in read_lines(sys.stdin, interactive):
            if line.startswith("/"):
                if not command(session, line, args, help_text):
                    break
                continue
            if not interactive:  # a transcript: what was typed, then the reply
                write_text(unescape(line) + ("" if raw else "\n"))
            turn(session, unescape(line), args)
    finally:
        engine.close()
    return 0


def chat_reply(conversation: Any, text: str, args: argparse.Namespace) -> None:
    """One turn of a conversation: say what was dropped to fit the context, stream the reply
    (its leading space left out), then the summary to stderr."""
    from ..errors import Gpt2Error

    n_ctx = conversation.session.engine.config.n_ctx
    try:
        steps = conversation.turn(text)
    except Gpt2Error as exc:
        say(f"[not sent: {exc}]")
        return
    if conversation.dropped:
        say(dropped_note(conversation.dropped, n_ctx))
    first = None
    started = False
    try:
        for step in steps:
            if first is None:
                first = time.perf_counter()
            piece = step.text if started else step.text.lstrip()
            if piece:
                started = True
                write_text(piece)
                sys.stdout.flush()
    except KeyboardInterrupt:
        print(" [stopped]", file=sys.stderr)
    write_text("\n")
    sys.stdout.flush()
    end = time.perf_counter()
    n = len(conversation.session.reply_ids)
    rate = f", {(n - 1) / (end - first):.1f} tokens/s" if first is not None and n > 1 and end > first else ""
    print(
        f"[{plural(n, 'token')}{rate}, context {len(conversation.session.ids)}/{n_ctx}, seed {conversation.seed}]",
        file=sys.stderr,
        flush=True,
    )


def dropped_note(dropped: list[dict[str, str]], n_ctx: int) -> str:
    """What a turn dropped to fit the context, in one line.

    >>> dropped_note([{"role": "user", "content": "Hello there, how are you today?"}], 1024)
    '[the conversation outgrew the context (1024 tokens): dropped 1 message: user "Hello there, how are you ..."]'
    """
    shown = []
    for message in dropped:
        text = " ".join(message["content"].split())
        shown.append(f'{message["role"]} "{text if len(text) <= 25 else text[:25] + "..."}"')
    return (
        f"[the conversation outgrew the context ({n_ctx} tokens): dropped {plural(len(dropped), 'message')}: "
        + ", ".join(shown)
        + "]"
    )


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


def command(session: Any, line: str, args: argparse.Namespace, help_text: str = HELP_RAW) -> bool:
    """Run a /command; False ends the session. A bad command or value is said, not fatal."""
    from ..errors import Gpt2Error

    name, _, value = line.strip().partition(" ")
    value = value.strip()
    try:
        if name in ("/quit", "/exit", "/q"):
            return False
        if name == "/reset":
            session.reset()
            say("the conversation is empty again" if hasattr(session, "messages") else "the text is empty again")
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
            say(help_text)
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
