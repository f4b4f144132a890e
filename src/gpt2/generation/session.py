"""A session: one running text that the user and the model extend in turns (`gpt2 chat`).

GPT-2 has no chat format: it continues text. A session is therefore one text
that grows: each turn appends what the user wrote, then the model's
continuation, and the next turn continues from there. Its KV cache is kept
between turns, so a turn costs the positions it adds, not the whole
conversation again. The session's sampler (and its random stream) lives across
turns too: a session seeded s gives the same replies to the same inputs.

When the text outgrows the context window, it slides as `stream` does: the
cache is rebuilt from the most recent n_ctx // 2 tokens.

>>> from gpt2.config import Config
>>> from gpt2.params import init_params
>>> from gpt2.engines import load_engine
>>> from gpt2.tokenizer import Tokenizer
>>> cfg = Config(n_layer=1, n_embd=8, n_head=2, n_ctx=32)
>>> engine = load_engine("pure", cfg, init_params(cfg, seed=0))
>>> session = Session(engine, GenerationConfig(max_new_tokens=3, temperature=0, stop_ids=()), Tokenizer.gpt2())
>>> steps = list(session.turn("Hello"))
>>> len(steps), steps[-1].finish_reason, len(session.ids)      # 1 token of prompt, 3 new
(3, 'length', 4)
>>> session.reset(); session.ids
[]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..engines.base import Engine
from ..errors import GenerationError
from .decoder import Decoder, GenerationConfig, Step
from .logits import ops_for
from .loop import Context, decode, start_token
from .sampling import Sampler

if TYPE_CHECKING:
    from ..tokenizer import Tokenizer

__all__ = ["Session"]


class Session:
    """A running text, its KV cache, and the settings and sampler its turns use."""

    def __init__(self, engine: Engine, config: GenerationConfig, tokenizer: Tokenizer) -> None:
        config.adjustments.check_vocabulary(engine.config.vocab_size)
        self.engine = engine
        self.config = config
        self.tokenizer = tokenizer
        self.logits = ops_for(engine)  # the kind of logits its engine returns
        self.sampler = Sampler(config.sampling, seed=config.seed)
        self.reply_ids: list[int] = []  # what the model added in the last turn
        self.context = Context([])  # the running text (the window's part of it, once it slid) and its cache

    @property
    def seed(self) -> int:
        return self.sampler.seed

    @property
    def ids(self) -> list[int]:
        return self.context.ids

    @property
    def text(self) -> str:
        return self.tokenizer.decode(self.ids)

    def turn(self, text: str) -> Iterator[Step]:
        """Append `text` ("" to let the model go on) and generate the model's continuation,
        yielding each `Step`; the last has a finish reason. The steps' text is what to show."""
        new = self.tokenizer.encode(text, allowed_special="all") if text else []
        if not self.ids and not new:
            new = [start_token(self.engine.config)]  # an empty session starts from <|endoftext|>
        context = self.context
        context.ids.extend(new)
        n_ctx = self.engine.config.n_ctx
        if len(context.ids) >= n_ctx:  # leave room for at least one new token: slide now
            del context.ids[: len(context.ids) - max(1, n_ctx // 2)]
            context.cache = None
        if context.cache is not None and len(context.cache) >= len(context.ids):
            # the last reply ended on a stop id (not in the text) and nothing was added:
            # the last position's logits are gone with that step, so run the text again
            context.cache = None
        decoder = Decoder(list(context.ids), self.config, self.tokenizer, sampler=self.sampler, logits=self.logits)
        self.reply_ids = decoder.ids
        try:
            yield from decode(self.engine, decoder, context)
        except BaseException:  # interrupted (Ctrl-C, or the caller stopped early): the cache may be
            context.cache = None  # half-written, so the next turn runs the text again
            raise

    def reset(self) -> None:
        """Start again from an empty text (the sampler's random stream goes on)."""
        self.context = Context([])

    def set_seed(self, seed: int) -> None:
        """Reseed the sampler: from here on the session draws as one started with `seed`."""
        self.config = self.config.replace(seed=seed)
        self.sampler = Sampler(self.config.sampling, seed=seed)

    def set(self, **changes: Any) -> None:
        """Change generation settings (temperature=0.7, top_k=40, max_new_tokens=100, ...) for
        the following turns; the sampler keeps its random stream."""
        if "seed" in changes:
            raise GenerationError("use set_seed to change the seed")
        self.config = self.config.replace(**changes)
        self.config.adjustments.check_vocabulary(self.engine.config.vocab_size)
        rng = self.sampler.rng
        self.sampler = Sampler(self.config.sampling, seed=self.sampler.seed)
        self.sampler.rng = rng
