"""A conversation written by a chat template, turn by turn (`gpt2 chat`).

Each turn adds the user's message, renders the whole conversation with the chat
template (`gpt2.chat_template`) exactly as `gpt2 serve`'s `/v1/chat/completions`
renders it, and lets the model write the assistant's reply, which stops at the
template's stop strings and joins the conversation. The prompt ids are the
rendered text's, encoded whole, as the server encodes it; the KV cache of the
last turn is kept when the new prompt starts with the last prompt and reply
(usually: the reply is written back as it came), and the turn runs only the
positions it adds; otherwise the whole prompt is run again.

When the conversation no longer fits the context with room for a reply of
`max_new_tokens`, the oldest messages go (the system message stays; a user
message goes with the assistant's reply to it), and `dropped` says which. A
message that cannot fit even alone is a `GenerationError`, and the
conversation is left as it was.

>>> from gpt2.chat_template import builtin_template
>>> from gpt2.config import Config
>>> from gpt2.params import init_params
>>> from gpt2.engines import load_engine
>>> from gpt2.tokenizer import Tokenizer
>>> cfg = Config(n_layer=1, n_embd=8, n_head=2, n_ctx=32)
>>> engine = load_engine("pure", cfg, init_params(cfg, seed=0))
>>> chat = Conversation(engine, GenerationConfig(max_new_tokens=3, temperature=0), Tokenizer.gpt2(),
...                     builtin_template("plain"), system="Be brief.")
>>> _ = list(chat.turn("Hi"))
>>> [m["role"] for m in chat.messages], chat.prompt().splitlines()[:2]
(['system', 'user', 'assistant'], ['Be brief.', 'User: Hi'])
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..chat_template import ChatTemplate
from ..engines.base import Engine
from ..errors import GenerationError
from .decoder import GenerationConfig, Step
from .session import Session

if TYPE_CHECKING:
    from ..tokenizer import Tokenizer

__all__ = ["Conversation"]


class Conversation:
    """Messages, the template that writes them, and the session that runs the model on them."""

    def __init__(
        self,
        engine: Engine,
        config: GenerationConfig,
        tokenizer: Tokenizer,
        template: ChatTemplate,
        *,
        system: str | None = None,
    ) -> None:
        self.template = template
        self.tokenizer = tokenizer
        stops = template.stops_for(tokenizer.eot_token is not None)
        self.session = Session(engine, config.replace(stop=tuple(dict.fromkeys((*config.stop, *stops)))), tokenizer)
        self.system = system
        self.messages: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
        self.dropped: list[dict[str, str]] = []  # what the last turn dropped to fit the context
        self.reply = ""  # the last reply, as it joined the conversation

    @property
    def config(self) -> GenerationConfig:
        return self.session.config

    def prompt(self, *, add_generation_prompt: bool = False) -> str:
        """The conversation as the template writes it (the server's prompt with the generation prompt)."""
        return self.template.render(self.messages, add_generation_prompt=add_generation_prompt)

    def prompt_ids(self) -> list[int]:
        """The ids the next reply is generated from: the rendered prompt, encoded whole."""
        return self.tokenizer.encode(self.prompt(add_generation_prompt=True), allowed_special="all")

    @property
    def seed(self) -> int:
        return self.session.seed

    @property
    def text(self) -> str:
        """The conversation so far, as the template writes it."""
        return self.prompt()

    def set_seed(self, seed: int) -> None:
        self.session.set_seed(seed)

    def set(self, **changes: object) -> None:
        """Change generation settings for the following turns (see `Session.set`)."""
        self.session.set(**changes)

    def turn(self, text: str) -> Iterator[Step]:
        """Add the user's `text` and drop what no longer fits (see `dropped`) now; then the reply's
        steps as they are generated (their text is the reply, stop strings cut). A reply cut short
        (Ctrl-C) joins the conversation as far as it went."""
        before = list(self.messages)
        self.messages.append({"role": "user", "content": text})
        try:
            ids = self._fit()
        except BaseException:
            self.messages = before
            raise
        return self._reply(ids)

    def _reply(self, ids: list[int]) -> Iterator[Step]:
        session = self.session
        done, suffix = session.ids, None
        if done and ids[: len(done)] == done and len(ids) > len(done):
            rest = self.tokenizer.decode(ids[len(done) :])
            if self.tokenizer.encode(rest, allowed_special="all") == ids[len(done) :]:
                suffix = rest  # the cache holds the rest of the prompt already
        if suffix is None:  # run the whole prompt (ids is its text encoded whole)
            session.reset()
            suffix = self.tokenizer.decode(ids)
        texts: list[str] = []
        try:
            for step in session.turn(suffix):
                texts.append(step.text)
                yield step
        finally:
            self.reply = "".join(texts)
            self.messages.append({"role": "assistant", "content": self.reply})

    def reset(self) -> None:
        """An empty conversation (the system message stays)."""
        self.messages = self.messages[:1] if self.system else []
        self.session.reset()

    def _fit(self) -> list[int]:
        """Drop the oldest messages until the prompt and a reply fit the context; the prompt's ids."""
        n_ctx = self.session.engine.config.n_ctx
        room = self.config.max_new_tokens
        first = 1 if self.system else 0
        self.dropped = []
        while True:
            ids = self.prompt_ids()
            if len(ids) + room <= n_ctx:
                return ids
            if len(self.messages) - first <= 1:  # only the new message is left (turn() restores the rest)
                self.dropped = []
                raise GenerationError(
                    f"this message makes a prompt of {len(ids)} tokens; with a reply of up to {room} tokens "
                    f"that is {len(ids) + room - n_ctx} more than the context of {n_ctx}: write less, or ask "
                    "for a shorter reply (/n N)"
                )
            self.dropped.append(self.messages.pop(first))
            while len(self.messages) - first > 1 and self.messages[first]["role"] != "user":
                self.dropped.append(self.messages.pop(first))  # a reply goes with the message it answered
