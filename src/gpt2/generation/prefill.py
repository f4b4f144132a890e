"""The scheduler's prefills: admitted sequences into cache rows, each with its first logits.

A `Prefiller` places the sequences the scheduler admits in the rows after the live
ones and runs their prompts: a prompt of at most `prefill_chunk` tokens is prefilled
whole at once, new prompts of one length in one pass (`prefill_batches`), and the `n`
choices of one prompt share one prefill, its row copied to theirs. A longer prompt
would stall every running stream for its whole prefill, so it is prefilled a chunk at a
time instead (a `ChunkedPrefill`): one chunk of at most `prefill_chunk` tokens each
scheduler step, between two decoding steps of the running streams, into the cache's
last row (never one of the live rows 0..n-1, which decode together). One long prompt is
prefilled at a time; its sequences hold their places in the batch from admission on,
and when its last chunk is in they take rows n, n+1, ... (copies of its row).

Every position still attends to every position before it, cached or new, so the logits
are the unchunked prefill's (up to float rounding, as in a batch):

>>> from gpt2.config import Config
>>> from gpt2.params import init_params
>>> from gpt2.engines import load_engine
>>> cfg = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11, n_ctx=16)
>>> engine = load_engine("pure", cfg, init_params(cfg, seed=0))
>>> prompt = [1, 2, 3, 4, 5, 6, 7]
>>> whole = engine.forward(prompt, engine.new_cache())
>>> cache = engine.new_cache()
>>> chunks = [engine.forward(prompt[i : i + 3], cache) for i in range(0, len(prompt), 3)]  # 3 + 3 + 1
>>> max(abs(a - b) for a, b in zip(chunks[-1], whole)) < 1e-12
True
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from ..errors import GenerationError
from .rows import BatchRows, SingleRow, join_logits
from .stats import SchedulerStats

if TYPE_CHECKING:
    from .sequence import Sequence

__all__ = [
    "DEFAULT_PREFILL_CHUNK",
    "PREFILL_TOKENS",
    "Prefiller",
    "PromptScorer",
    "Ready",
    "ChunkedPrefill",
    "check_prefill_chunk",
    "needs_chunks",
    "prefill_batches",
]

DEFAULT_PREFILL_CHUNK = 256  # prompt positions a step: longer prompts are prefilled in chunks
PREFILL_TOKENS = 2048  # new positions in one prefill pass (bounds the activations' memory)

# A prefilled sequence (in its row), the logits of its next position, its prompt's own
# log-probabilities (echo + logprobs; else None).
Ready = tuple["Sequence", Any, "list[Any] | None"]

# What scores a prompt (echo + logprobs): (prompt ids, logits [T, V] of every prompt position,
# k alternatives) -> one entry per prompt token, in the caller's format (the server's is
# `gpt2.server.logprobs.prompt_logprobs` with its tokenizer).
PromptScorer = Callable[[list[int], Any, int], list[Any]]


def check_prefill_chunk(value: object) -> int:
    """`value` if it is a whole number of tokens >= 1, else a GenerationError saying so."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GenerationError(f"prefill_chunk must be an integer >= 1, got {value!r}")
    return value


def needs_chunks(seq: Sequence, chunk: int) -> bool:
    """Whether the sequence's prompt is prefilled in chunks: longer than one, and prefilled at all
    (max_tokens 0 without echo + logprobs costs no pass)."""
    return len(seq.prompt_ids) > chunk and not (seq.decoder.finished and seq.prompt_logprobs is None)


def prefill_batches(reps: list[Sequence]) -> list[list[Sequence]]:
    """Consecutive new rows whose prompts have one length go through one pass; prompts
    scored whole (echo + logprobs) go alone, their [T, V] logits being large."""
    batches: list[list[Sequence]] = []
    for seq in reps:
        last = batches[-1] if batches else None
        if (
            last is not None
            and seq.prompt_logprobs is None
            and last[0].prompt_logprobs is None
            and len(last[0].prompt_ids) == len(seq.prompt_ids)
            and len(seq.prompt_ids) * (len(last) + 1) <= PREFILL_TOKENS
        ):
            last.append(seq)
        else:
            batches.append([seq])
    return batches


class ChunkedPrefill:
    """One long prompt being prefilled into cache row `row`, a chunk per scheduler step.

    `members` are the sequences waiting for it: one, or the `n` choices of one request,
    which share the prompt and, once it is in, copies of the row. With echo + logprobs
    the logits of every chunk are kept, to score the whole prompt at the end.
    """

    def __init__(self, members: list[Sequence], row: int, chunk: int) -> None:
        self.members = members
        self.row = row
        self.chunk = chunk
        self.prompt = members[0].prompt_ids
        self.all_logits = members[0].prompt_logprobs is not None
        self.done = 0  # prompt positions in the row so far
        self._scored: list[Any] = []  # each chunk's [t, V] logits (echo + logprobs only)

    @property
    def finished(self) -> bool:
        return self.done >= len(self.prompt)

    def next_chunk(self) -> list[int]:
        return self.prompt[self.done : self.done + self.chunk]

    def add(self, n: int, logits: Any) -> Any:
        """`n` more positions are in the row, with their `logits` ([V], or [t, V] when scoring);
        returns the logits of the last position."""
        self.done += n
        if not self.all_logits:
            return logits
        self._scored.append(logits)
        return logits[-1]

    def prompt_logits(self) -> Any:
        """[T, V]: every prompt position's logits, the chunks' joined (echo + logprobs)."""
        return join_logits(self._scored)


class Prefiller:
    """The scheduler's prefills (see the module docstring), over its rows and its metrics."""

    def __init__(
        self,
        rows: BatchRows | SingleRow,
        metrics: SchedulerStats,
        clock: Callable[[], float],
        score_prompt: PromptScorer | None = None,
        chunk: int = DEFAULT_PREFILL_CHUNK,
    ) -> None:
        self.chunk = check_prefill_chunk(chunk)
        self.rows, self.metrics, self.clock, self.score_prompt = rows, metrics, clock, score_prompt
        self.chunked: ChunkedPrefill | None = None  # the long prompt being prefilled

    @property
    def held(self) -> int:
        """Places in the batch held by the sequences of the chunked prefill."""
        return len(self.chunked.members) if self.chunked else 0

    def must_wait(self, seq: Sequence, taken: list[Sequence]) -> bool:
        """A long prompt waits while another is prefilled in chunks, before this step or among
        `taken` this step (the n choices of one prompt go together); shorter prompts go on."""
        if not needs_chunks(seq, self.chunk):
            return False
        if self.chunked is not None:
            return True
        first = next((s for s in taken if needs_chunks(s, self.chunk)), None)
        return first is not None and (seq.group is None or seq.group != first.group)

    def place(self, placed: list[Sequence], first_row: int) -> list[Sequence]:
        """Rows first_row, first_row + 1, ... for newly admitted sequences, in the order `prefill`
        wants them (returned); a long prompt (`must_wait` let one through) starts its chunked
        prefill instead, its sequences placed when it is done."""
        long = [s for s in placed if needs_chunks(s, self.chunk)]
        if long:
            self.chunked = ChunkedPrefill(long, self.rows.capacity - 1, self.chunk)
            placed = [s for s in placed if all(s is not t for t in long)]
        reps, followers = _shared(placed)
        ordered = reps + [f for f, _ in followers]
        for i, seq in enumerate(ordered):
            seq.row = first_row + i
        return ordered

    def prefill(self, ordered: list[Sequence]) -> list[Ready]:
        """Prefill the sequences `place` put in rows: each prompt once, copied to the rows of the
        other choices that share it."""
        reps, followers = _shared(ordered)
        first: dict[int, Any] = {}  # id(seq) -> logits of its next position
        scored: dict[int, Any] = {}
        for batch in prefill_batches(reps):
            all_logits = batch[0].prompt_logprobs is not None
            logits = self._pass(batch[0].row, [s.prompt_ids for s in batch], all_logits)
            for seq, row in zip(batch, logits):
                first[id(seq)] = row[-1] if all_logits else row
                if all_logits:
                    scored[id(seq)] = self._prompt_entries(seq, row)
        for seq, leader in followers:
            self.rows.move(leader.row, seq.row)
            first[id(seq)] = first[id(leader)]
            if id(leader) in scored:
                scored[id(seq)] = scored[id(leader)]
        return [(seq, first[id(seq)], scored.get(id(seq))) for seq in ordered]

    def step(self, first_row: int) -> list[Ready]:
        """The next chunk of the long prompt; after its last, its sequences, in rows first_row, ...
        (they stay members until then, so that a failure on the way fails them too)."""
        job = self.chunked
        if job is None:
            return []
        chunk = job.next_chunk()
        logits = self._pass(job.row, [chunk], job.all_logits, extend=job.done > 0)[0]
        last = job.add(len(chunk), logits)
        if not job.finished:
            return []
        scored = self._prompt_entries(job.members[0], job.prompt_logits()) if job.all_logits else None
        for i, seq in enumerate(job.members):  # copies of the prompt's row
            seq.row = first_row + i
            if seq.row != job.row:
                self.rows.move(job.row, seq.row)
        if all(seq.row != job.row for seq in job.members):
            self.rows.clear(job.row)
        self.chunked = None
        return [(seq, last, scored) for seq in job.members]

    def drop(self, gone: Callable[[Sequence], bool]) -> list[Sequence]:
        """The sequences of the chunked prefill for which `gone` holds leave it (returned); with
        none left, it stops and its row is cleared."""
        job = self.chunked
        if job is None:
            return []
        verdicts = [(s, gone(s)) for s in job.members]  # once each: `cancelled` may change meanwhile
        left = [s for s, leaves in verdicts if leaves]
        job.members = [s for s, leaves in verdicts if not leaves]
        if not job.members:
            self.rows.clear(job.row)
            self.chunked = None
        return left

    def _pass(self, row: int, prompts: list[list[int]], all_logits: bool, extend: bool = False) -> Any:
        """One prefill pass (counted and timed): prompts into rows row, row + 1, ...; `extend`:
        one prompt's next chunk, after the positions its row holds."""
        start = self.clock()
        if extend:
            logits = [self.rows.extend(row, prompts[0], all_logits)]
        else:
            logits = self.rows.prefill(row, prompts, all_logits)
        self.metrics.prefill_seconds += self.clock() - start
        self.metrics.prefills += 1
        self.metrics.tokens(prompt=sum(len(p) for p in prompts))
        return logits

    def _prompt_entries(self, seq: Sequence, logits: Any) -> list[Any]:
        if self.score_prompt is None:
            raise GenerationError("prompt log-probabilities need a scheduler made with score_prompt")
        return self.score_prompt(seq.prompt_ids, logits, seq.prompt_logprobs or 0)


def _shared(placed: list[Sequence]) -> tuple[list[Sequence], list[tuple[Sequence, Sequence]]]:
    """One representative per shared prompt (the first of its group) is prefilled; its
    followers, paired with it, copy its row."""
    leaders: dict[Hashable, Sequence] = {}
    followers: list[tuple[Sequence, Sequence]] = []
    for seq in placed:
        leader = leaders.setdefault(seq.group, seq) if seq.group is not None else seq
        if leader is not seq:
            followers.append((seq, leader))
    reps = [s for s in placed if all(s is not f for f, _ in followers)]
    return reps, followers
