"""The generation options `gpt2 generate` and `gpt2 chat` share, turned into a `GenerationConfig`.

Every option defaults to None on the command line, so that an option the user
gave can be told from its default: one that has no effect in the chosen mode
(a temperature with beam search, a length penalty without beams) is a warning,
not silence. `defaults()` holds what None means: the library's own defaults, read from
`GenerationConfig`'s fields (so the command line and the Python API sample alike with the same
seed), plus the three that only the command line has.

>>> parse_logit_bias(["50256=-100", '{"198": 2.5}'])
{50256: -100.0, 198: 2.5}
>>> unescape(r"\\n\\nTHE END")
'\\n\\nTHE END'
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import re
from typing import TYPE_CHECKING, Any

from ..errors import GenerationError

if TYPE_CHECKING:
    from ..generation import GenerationConfig
    from ..tokenizer import Tokenizer

# The options only the command line has (what beam search and batches default to).
CLI_DEFAULTS: dict[str, Any] = {"length_penalty": 1.0, "num_samples": 1, "num_beams": 1}


@functools.cache
def defaults() -> dict[str, Any]:
    """What an option left out means: GenerationConfig's defaults (imported here, when a command
    runs, not while every command's parser is built), then the command line's own.

    >>> defaults()["top_k"], defaults()["max_new_tokens"], defaults()["num_beams"]
    (40, 50, 1)
    """
    from ..generation import GenerationConfig

    library = {f.name: f.default for f in dataclasses.fields(GenerationConfig) if f.default is not dataclasses.MISSING}
    return {**library, **CLI_DEFAULTS}


class _Default:
    """An option's default in its --help, looked up only when the help is shown."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        return str(defaults()[self.name])


def _show_defaults(p: argparse.ArgumentParser) -> None:
    """A help that says %(fallback)s gets the option's default there (argparse fills the help's
    %(...)s from the action's attributes when it shows it)."""
    for action in p._actions:
        if action.help and "%(fallback)s" in action.help:
            action.fallback = _Default(action.dest)  # type: ignore[attr-defined]


SAMPLER_OPTIONS = ("temperature", "top_k", "top_p", "seed")
ADJUSTMENT_OPTIONS = ("repetition_penalty", "presence_penalty", "frequency_penalty", "logit_bias")


def add_sampling_arguments(p: argparse.ArgumentParser, *, batches: bool) -> None:
    """The sampler, the logit adjustments, stops, --show-probs; with `batches`, also
    --num-samples, --num-beams and --length-penalty."""
    s = p.add_argument_group("sampling")
    s.add_argument("--max-new-tokens", "-n", type=int, metavar="N", help="tokens to add (default %(fallback)s)")
    s.add_argument(
        "--temperature",
        "-t",
        type=float,
        metavar="T",
        help="0 (or anything below 1e-6) = greedy (default %(fallback)s)",
    )
    s.add_argument(
        "--top-k",
        type=int,
        metavar="K",
        help="sample among the K most likely tokens; 0 = all (default %(fallback)s). Exactly K are kept: on a tie at "
        "the K-th logit the lower ids win, where transformers keeps every tied token",
    )
    s.add_argument(
        "--top-p",
        type=float,
        metavar="P",
        help="nucleus: the fewest most likely tokens whose probability reaches P, in (0, 1]; 1 = off "
        "(default %(fallback)s)",
    )
    s.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the sampler (the same seed picks the same tokens in every engine; default: one is drawn "
        "and printed, so any run can be repeated)",
    )
    if batches:
        s.add_argument(
            "--num-samples", type=int, metavar="N", help="samples per prompt, run as one batch (default %(fallback)s)"
        )
        s.add_argument(
            "--num-beams",
            type=int,
            metavar="K",
            help="beam search with K beams: deterministic, the rules of transformers' beam search "
            "(default %(fallback)s: off)",
        )
        s.add_argument(
            "--length-penalty",
            type=float,
            metavar="X",
            help="beam search ranks by logprob / length**X: > 0 favours longer, < 0 shorter (default %(fallback)s)",
        )
    c = p.add_argument_group("controls")
    c.add_argument(
        "--stop",
        action="append",
        default=[],
        metavar="TEXT",
        help="stop where the text contains TEXT, cut from the output even when it spans tokens "
        r"(repeatable; \n, \t and \\ are understood)",
    )
    c.add_argument("--ignore-eot", action="store_true", help="do not stop at <|endoftext|>")
    c.add_argument(
        "--repetition-penalty",
        type=float,
        metavar="X",
        help="Hugging Face's: the logit of every token already in the text is divided by X if positive, "
        "multiplied if negative; > 1 discourages repeats (default %(fallback)s: off)",
    )
    c.add_argument(
        "--presence-penalty",
        type=float,
        metavar="X",
        help="OpenAI's: subtract X from the logit of every token generated at least once (default %(fallback)s)",
    )
    c.add_argument(
        "--frequency-penalty",
        type=float,
        metavar="X",
        help="OpenAI's: subtract X times the number of times a token was generated (default %(fallback)s)",
    )
    c.add_argument(
        "--logit-bias",
        action="append",
        default=[],
        metavar="ID=BIAS",
        help="add BIAS to token ID's logit (-100 bans it, +100 forces it); repeatable, or a JSON object "
        """such as '{"50256": -100}'""",
    )
    c.add_argument(
        "--show-probs",
        type=int,
        metavar="K",
        help="show each new token's probability and the K most likely alternatives (0-20), from the model's "
        "own logits before penalties and temperature",
    )
    _show_defaults(p)


def option(args: argparse.Namespace, name: str) -> Any:
    """The value of option `name`: what the user gave, else its default."""
    value = getattr(args, name, None)
    return defaults().get(name) if value is None else value


def given(args: argparse.Namespace, name: str) -> bool:
    value = getattr(args, name, None)
    return value is not None and value != []


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def unescape(text: str) -> str:
    r"""A stop string as typed: \n, \t, \r and \\ become what they stand for (a newline is hard to
    type in a shell)."""
    return re.sub(r"\\([ntr\\])", lambda m: {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}[m.group(1)], text)


def parse_logit_bias(values: list[str]) -> dict[int, float]:
    """`ID=BIAS` items and JSON objects {"ID": BIAS}, merged (a later one wins)."""
    out: dict[int, float] = {}
    for value in values:
        text = value.strip()
        if text.startswith("{"):
            try:
                items = json.loads(text)
            except ValueError as exc:
                raise GenerationError(f"--logit-bias: not a JSON object ({exc})") from None
            if not isinstance(items, dict):
                raise GenerationError("--logit-bias: expected a JSON object of token id -> bias")
            pairs = [(str(k), v) for k, v in items.items()]
        else:
            key, sep, bias = text.partition("=")
            if not sep:
                raise GenerationError(f"--logit-bias takes ID=BIAS (or a JSON object), got {value!r}")
            pairs = [(key, bias)]
        for key, bias in pairs:
            if not re.fullmatch(r"\s*[0-9]{1,9}\s*", key):
                raise GenerationError(f"--logit-bias: {key!r} is not a token id")
            try:
                number = float(bias)
            except (TypeError, ValueError):
                raise GenerationError(
                    f"--logit-bias: the bias of token {key.strip()} is not a number: {bias!r}"
                ) from None
            if not math.isfinite(number):
                raise GenerationError(f"--logit-bias: the bias of token {key.strip()} must be finite, got {bias!r}")
            out[int(key)] = number
    return out


def check_counts(args: argparse.Namespace) -> None:
    """Counts that must be positive, and the length penalty, checked before any weights are read."""
    for name in ("num_samples", "num_beams"):
        if given(args, name) and option(args, name) < 1:
            raise GenerationError(f"{flag(name)} must be >= 1, got {option(args, name)}")
    if option(args, "max_new_tokens") < 0:
        raise GenerationError(f"--max-new-tokens must be >= 0, got {option(args, 'max_new_tokens')}")
    if not math.isfinite(option(args, "length_penalty")):
        raise GenerationError(f"--length-penalty must be a finite number, got {option(args, 'length_penalty')}")
    if option(args, "num_beams") > 1 and option(args, "num_samples") > 1:
        raise GenerationError("--num-beams and --num-samples cannot be combined (beam search is deterministic)")


def ineffective(args: argparse.Namespace) -> list[str]:
    """Warnings for the options the user gave that change nothing in the chosen mode."""
    notes = []
    from ..generation.sampling import SamplingConfig

    beams = option(args, "num_beams") > 1
    # greedy by the one rule (SamplingConfig.greedy); by the temperature alone, or by --top-k 1
    cold = SamplingConfig(temperature=option(args, "temperature")).greedy
    greedy = SamplingConfig(temperature=option(args, "temperature"), top_k=option(args, "top_k")).greedy
    # (logit adjustments and stops do change greedy decoding: they are never "ineffective" there)
    if beams:
        ignored = [flag(n) for n in (*SAMPLER_OPTIONS, *ADJUSTMENT_OPTIONS, "stop", "show_probs") if given(args, n)]
        if ignored:
            notes.append(
                f"{', '.join(ignored)} {'has' if len(ignored) == 1 else 'have'} no effect with --num-beams: beam "
                "search ranks the model's own log-probabilities and draws nothing"
            )
    else:
        if given(args, "length_penalty"):
            notes.append("--length-penalty has no effect without --num-beams")
        if greedy:
            if cold:
                why, moot = (
                    f"--temperature {repr(option(args, 'temperature')).removesuffix('.0')}",
                    ("top_k", "top_p", "seed"),
                )
            else:
                why, moot = "--top-k 1", ("temperature", "top_p", "seed")
            ignored = [flag(n) for n in moot if given(args, n)]
            if ignored:
                notes.append(
                    f"{', '.join(ignored)} {'has' if len(ignored) == 1 else 'have'} no effect with {why}: "
                    "greedy decoding takes the most likely token and draws nothing"
                )
            if option(args, "num_samples") > 1:
                notes.append(f"with {why} the {option(args, 'num_samples')} samples of a prompt are identical")
    return notes


def generation_config(args: argparse.Namespace, tokenizer: Tokenizer) -> GenerationConfig:
    """The GenerationConfig the options describe (checked: a bad value is a GenerationError). With
    no --seed one is drawn here, so that it can be reported and the run repeated."""
    from ..generation import GenerationConfig
    from ..generation.sampling import draw_seed

    stop_ids = () if args.ignore_eot or tokenizer.eot_token is None else (tokenizer.eot_token,)
    return GenerationConfig(
        max_new_tokens=option(args, "max_new_tokens"),
        temperature=option(args, "temperature"),
        top_k=option(args, "top_k"),
        top_p=option(args, "top_p"),
        repetition_penalty=option(args, "repetition_penalty"),
        presence_penalty=option(args, "presence_penalty"),
        frequency_penalty=option(args, "frequency_penalty"),
        logit_bias=parse_logit_bias(args.logit_bias),
        stop_ids=stop_ids,
        stop=tuple(unescape(s) for s in args.stop),
        logprobs=getattr(args, "show_probs", None),
        seed=draw_seed() if args.seed is None else args.seed,
    )


def step_record(step: Any, tokenizer: Tokenizer) -> dict[str, Any]:
    """One step's probabilities for --json: the token, its text, log-probability and probability,
    and the alternatives."""

    def entry(token: int, logprob: float) -> dict[str, Any]:
        return {
            "token": token,
            "text": tokenizer.decode([token]),
            "logprob": logprob,
            "prob": math.exp(logprob),
        }

    return {**entry(step.token, step.logprob), "top": [entry(t, lp) for t, lp in step.top]}


def format_probs(records: list[dict[str, Any]]) -> str:
    """The --show-probs table: one line per step, the chosen token and the alternatives."""
    lines = [f"{'step':>5}  {'token':<16} {'prob':>7}   alternatives"]
    for i, r in enumerate(records, start=1):
        alternatives = " | ".join(f"{repr(a['text'])} {_percent(a['prob'])}" for a in r["top"])
        lines.append(f"{i:>5}  {repr(r['text']):<16} {_percent(r['prob']):>7}   {alternatives}".rstrip())
    return "\n".join(lines)


def _percent(p: float) -> str:
    """0.4123 -> '41.23%'; below 0.01% in scientific notation, so that it does not read as 0."""
    return f"{100 * p:.2f}%" if p >= 1e-4 else f"{100 * p:.0e}%"
