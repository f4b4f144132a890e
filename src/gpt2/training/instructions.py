"""Instruction fine-tuning data: conversations in a JSONL file -> token ids with a loss mask.

A `--data` file ending in `.jsonl` whose first record is an object with a `messages` or an
`instruction` key is instruction data (:func:`is_instruction_data`); anything else is text,
read as `data.py` reads it. One record a line, either

    {"messages": [{"role": "system" | "user" | "assistant", "content": "..."}, ...]}
    {"instruction": "...", "input": "... (optional)", "output": "..."}

An instruction record is the conversation of one user message (the instruction, then a
blank line and the input when there is one) and one assistant message (the output).

Each conversation is rendered by the chat template (`gpt2.chat_template`: the one the
server and `gpt2 chat` use) and cut into pieces: what the template writes up to each
assistant turn (the prompt, as `add_generation_prompt` renders it: what the model will be
given) and the reply the model must write. The reply's tokens are learnt, and so is the
template's end of turn after it: its stop string (`plain`: the "\\nUser:" that starts the
next turn; `chatml`: "<|im_end|>"), written after the last reply when the template does not
write it, or the end-of-text token for a template without a stop string. Every other
position's target is -100, which the loss ignores (`GPT2.forward`'s `ignore_index`), so the
model is taught to answer, not to write questions. Each piece is encoded on its own, so the
prompt's ids are the ids the server encodes for the same conversation.

An example longer than the context (+1: inputs and targets overlap by one) is refused with
its line number; a batch pads its shorter examples on the right with masked positions
(causal attention never looks right, so padding changes nothing before it).

>>> from gpt2.chat_template import builtin_template
>>> from gpt2.tokenizer import Tokenizer
>>> tok = Tokenizer.gpt2()
>>> msgs = parse_record('{"instruction": "Add 2 and 3.", "output": "5"}', "x.jsonl", 1)
>>> ex = encode_conversation(msgs, builtin_template("plain"), tok)
>>> tok.decode(ex.ids)
'User: Add 2 and 3.\\nAssistant: 5\\nUser:'
>>> tok.decode([i for i, learnt in zip(ex.ids, ex.learnt) if learnt])
' 5\\nUser:'
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DataError

if TYPE_CHECKING:
    import torch

    from ..chat_template import ChatTemplate

IGNORE = -100  # the target the loss skips (torch's cross_entropy ignore_index, GPT2.forward's)
EXAMPLES_VERSION = b"gpt2-instructions-v1"  # part of the data key a checkpoint keeps
MAX_SHOWN = 60


@dataclass(frozen=True)
class Example:
    """One conversation's token ids, and for each id whether the model must learn to write it."""

    ids: tuple[int, ...]
    learnt: tuple[bool, ...]
    line: int = 0  # its line in the file (0: not from a file)


# --- reading ---------------------------------------------------------------------------------


def is_instruction_data(path: str | Path) -> bool:
    """True for a `.jsonl` file whose first record is an object with `messages` or `instruction`."""
    path = Path(path)
    if path.suffix.lower() != ".jsonl" or not path.is_file():
        return False
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    record = json.loads(line)
                    return isinstance(record, dict) and ("messages" in record or "instruction" in record)
    except (OSError, ValueError):  # unreadable, not UTF-8 or not JSON: the text path says what is wrong
        return False
    return False


def parse_record(line: str, name: str, number: int) -> list[dict[str, str]]:
    """One JSONL line -> the conversation's checked messages; a bad record is a one-line
    DataError naming the file and the line."""
    from ..chat_template import ChatMessageError, normalize_messages

    where = f"{name}:{number}"
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise DataError(f"{where}: not a JSON object ({exc})") from None
    if not isinstance(record, dict):
        raise DataError(f"{where}: a record must be a JSON object, got {_show(record)}")
    if "messages" in record:
        messages = record["messages"]
    elif "instruction" in record:
        messages = _instruction_messages(record, where)
    else:
        raise DataError(
            f'{where}: a record needs "messages" (a conversation) or "instruction" and "output"; '
            f"it has {', '.join(map(repr, record)) or 'no keys'}"
        )
    try:
        checked = normalize_messages(messages)
    except ChatMessageError as exc:
        raise DataError(f"{where}: {exc}") from None
    if not any(m["role"] == "assistant" for m in checked):
        raise DataError(f"{where}: the conversation has no assistant message, so nothing to learn")
    return checked


def _instruction_messages(record: Mapping[str, Any], where: str) -> list[dict[str, str]]:
    unknown = sorted(set(record) - {"instruction", "input", "output"})
    if unknown:
        raise DataError(
            f'{where}: unknown field {unknown[0]!r} (an instruction record has "instruction", "input" and "output")'
        )
    for key in ("instruction", "output"):
        if not isinstance(record.get(key), str):
            raise DataError(f"{where}: {key!r} must be a string, got {_show(record.get(key))}")
    extra = record.get("input", "")
    if extra is None:
        extra = ""
    if not isinstance(extra, str):
        raise DataError(f"{where}: 'input' must be a string, got {_show(extra)}")
    if not record["instruction"].strip():
        raise DataError(f"{where}: 'instruction' is empty")
    user = record["instruction"] + (f"\n\n{extra}" if extra.strip() else "")
    return [{"role": "user", "content": user}, {"role": "assistant", "content": record["output"]}]


def read_conversations(path: str | Path) -> list[tuple[int, list[dict[str, str]]]]:
    """(line number, messages) of every non-blank line of a JSONL file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text") from None
    out = [(n, parse_record(line, str(path), n)) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    if not out:
        raise DataError(f"{path} has no records")
    return out


# --- rendering and encoding ------------------------------------------------------------------


def encode_conversation(
    messages: Sequence[Mapping[str, str]], template: ChatTemplate, tokenizer, line: int = 0
) -> Example:
    """The conversation as one example: prompt pieces not learnt, each reply and its end of turn learnt.

    The template must render a conversation as a growing text: the render of the messages up to
    an assistant turn (with the generation prompt) must be the start of the render that includes
    it, as it is for every template that can be served; otherwise a DataError."""
    where = f"line {line}: " if line else ""
    full = template.render(messages, add_generation_prompt=False)
    spans: list[tuple[int, int]] = []  # the learnt character ranges of `full`
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        # a conversation opening with the assistant: all its first turn's text is the reply
        prompt = template.render(messages[:i], add_generation_prompt=True) if i else ""
        through = template.render(messages[: i + 1], add_generation_prompt=False)
        if not (through.startswith(prompt) and full.startswith(through)):
            raise DataError(
                f"{where}the chat template {template.name} does not render the conversation up to an "
                "assistant turn as the start of the whole conversation, so its replies cannot be found"
            )
        start, end = len(prompt), len(through)
        if spans and start < spans[-1][1]:
            start = spans[-1][1]
        spans.append((start, end))
    full, spans = _with_end_of_turn(full, spans, template)
    ids: list[int] = []
    learnt: list[bool] = []
    cut = 0
    for start, end in spans:
        for piece, flag in ((full[cut:start], False), (full[start:end], True)):
            piece_ids = _encode(tokenizer, piece)
            ids += piece_ids
            learnt += [flag] * len(piece_ids)
        cut = end
    if spans[-1][1] == len(full) + 1:  # the end-of-text token after the last reply
        ids.append(tokenizer.eot_token)
        learnt.append(True)
    elif cut < len(full):
        rest = _encode(tokenizer, full[cut:])
        ids += rest
        learnt += [False] * len(rest)
    return Example(tuple(ids), tuple(learnt), line)


def _with_end_of_turn(
    full: str, spans: list[tuple[int, int]], template: ChatTemplate
) -> tuple[str, list[tuple[int, int]]]:
    """Extend each reply's span over the template's stop string (the end of its turn), adding the
    stop after the last reply when the template does not write it; a template without a stop
    string gets the end-of-text token after its last reply (marked as the span ending one past
    the text)."""
    stop = template.stop[0] if template.stop else None
    out = []
    for k, (start, end) in enumerate(spans):
        last = k == len(spans) - 1
        if stop is None:
            if last and end == len(full):
                end = len(full) + 1
            out.append((start, end))
            continue
        reply = full[start:end]
        if stop in reply:
            out.append((start, start + reply.index(stop) + len(stop)))
            continue
        overlap = next((n for n in range(min(len(stop), len(reply)), 0, -1) if reply.endswith(stop[:n])), 0)
        rest = stop[overlap:]
        if full.startswith(rest, end):
            end += len(rest)
        elif last and end == len(full):
            full += rest
            end += len(rest)
        out.append((start, end))
    return full, out


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, allowed_special="all") if text else []


# --- the data set ----------------------------------------------------------------------------


def load_examples(path: str | Path, template: ChatTemplate, tokenizer, context: int) -> tuple[list[Example], str]:
    """Every conversation of the file encoded, and the data key a checkpoint keeps (the file's
    bytes, the template and the tokenizer). An example longer than `context + 1` tokens is a
    DataError naming its line."""
    from .data import tokenizer_fingerprint

    path = Path(path)
    examples = []
    for line, messages in read_conversations(path):
        example = encode_conversation(messages, template, tokenizer, line)
        if len(example.ids) > context + 1:
            raise DataError(
                f"{path}:{line}: the example is {len(example.ids)} tokens, longer than the context "
                f"length {context} (+1); shorten it, or train with a larger --context-length"
            )
        if not any(example.learnt[1:]):  # the first id is never a target
            raise DataError(f"{path}:{line}: the reply has no tokens to learn")
        examples.append(example)
    h = hashlib.sha256(EXAMPLES_VERSION)
    h.update(tokenizer_fingerprint(tokenizer).encode())
    h.update(template.source.encode())
    h.update(repr(template.stop).encode())
    h.update(path.read_bytes())
    return examples, h.hexdigest()[:32]


def split_examples(
    examples: Sequence[Example], val_fraction: float, name: str = "the data"
) -> tuple[list[Example], list[Example]]:
    """(train, validation): the last `val_fraction` of the examples (at least one) is validation,
    as the text path holds out the end of the text."""
    n = len(examples)
    n_val = max(round(n * val_fraction), 1) if val_fraction > 0 else 0
    if n - n_val < 1:
        raise DataError(
            f"{name} has {n} example(s), too few to hold out {n_val} for validation and train on the rest; "
            "add examples or use --val-fraction 0"
        )
    return list(examples[: n - n_val]), list(examples[n - n_val :])


class Examples:
    """A list of examples as batches: the shape of `data.Windows` (len, batch, tokens), so the
    trainer and its evaluation use either alike.

    >>> ex = Examples([Example((1, 2, 3), (False, True, True)), Example((4, 5), (False, True))], pad_id=0)
    >>> x, y = ex.batch([0, 1])
    >>> x.tolist(), y.tolist()
    ([[1, 2], [4, 0]], [[2, 3], [5, -100]])
    """

    def __init__(self, examples: Sequence[Example], pad_id: int) -> None:
        import numpy as np

        self.examples = list(examples)
        self.pad_id = pad_id
        self.tokens = np.fromiter((i for e in self.examples for i in e.ids), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.examples)

    def batch(self, indices: Sequence[int], pad_to: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets, both [len(indices), T] int64, T the longest example's length - 1
        (or `pad_to`); targets of prompt and padding positions are -100."""
        import torch

        chosen = [self.examples[i] for i in indices]
        width = max(len(e.ids) - 1 for e in chosen) if pad_to is None else pad_to
        x = torch.full((len(chosen), width), self.pad_id, dtype=torch.int64)  # [B, T]
        y = torch.full((len(chosen), width), IGNORE, dtype=torch.int64)  # [B, T]
        for row, e in enumerate(chosen):
            n = len(e.ids) - 1
            x[row, :n] = torch.tensor(e.ids[:-1], dtype=torch.int64)  # [n]
            y[row, :n] = masked_targets(e.ids, e.learnt)  # [n]
        return x, y


def masked_targets(ids: Sequence[int], learnt: Sequence[bool]) -> torch.Tensor:
    """The targets of an example's inputs `ids[:-1]`: the next id where it is learnt, else -100.

    >>> masked_targets((10, 11, 12, 13), (False, False, True, True)).tolist()
    [-100, 12, 13]
    """
    import torch

    targets = torch.tensor(ids[1:], dtype=torch.int64)  # [n]
    keep = torch.tensor(learnt[1:], dtype=torch.bool)  # [n]: is target j learnt?
    return torch.where(keep, targets, torch.tensor(IGNORE))


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


@dataclass
class InstructionData:
    """What the trainer needs of an instruction file: batches, the template, the checkpoint's key."""

    train: Examples
    val: Examples | None
    template: ChatTemplate
    key: str


def load_instruction_data(
    path: str | Path,
    tokenizer,
    *,
    context: int,
    val_fraction: float,
    vocab_size: int,
    template_choice: str | None = None,
    model_directory: str | Path | None = None,
) -> InstructionData:
    """The trainer's hook: the template (`template_choice`, else the model directory's own, else
    `plain`), the examples encoded, checked against the vocabulary, and split."""
    import numpy as np

    from ..chat_template import resolve_template
    from .data import check_vocabulary

    template = resolve_template(model_directory, template_choice)
    examples, key = load_examples(path, template, tokenizer, context)
    check_vocabulary(
        np.fromiter((i for e in examples for i in e.ids), dtype=np.int64), vocab_size, str(path), tokenizer
    )
    train, val = split_examples(examples, val_fraction, name=str(path))
    pad = tokenizer.eot_token
    return InstructionData(Examples(train, pad), Examples(val, pad) if val else None, template, key)
