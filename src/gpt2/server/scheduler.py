"""Continuous batching: one thread owns the engine and runs every live sequence as one batch.

Each completion choice is a `Sequence` (`sequence.py`, with the events it hears)
with its own `gpt2.generation.Decoder` (its own sampler, seed, penalties, stop
strings). The scheduler thread loops:

1. reap: sequences whose client went away, or whose time limit passed, leave;
2. admit: waiting sequences take the free rows of the batched KV cache and
   are prefilled (new prompts of one length in one pass; the `n` choices of
   one prompt share one prefill, its cache row copied to theirs), then each
   picks its first token;
3. decode: every live sequence feeds its last token through ONE
   `engine.forward_batch` (rows holding different numbers of positions), and
   each decoder picks its next token from its own row of logits.

Live sequences keep rows 0..n-1 of the cache (`cache.rows(n)` is the batch);
when one finishes, the last live row is copied into its place (`copy_row`) and
the last row cleared (`clear_row`). A sequence's tokens therefore depend only
on its own logits and its own sampler: the same text alone or beside others
(up to float rounding: a batched product may sum in another order than a
single-row one, which can flip a near-tie; in float64 that never happens in
practice). An engine without batches (the pure engine) runs one sequence at a
time.

The thread talks to requests through each sequence's `sink`, a callable that
must be safe to call from another thread (the server's posts to the request's
asyncio queue with `call_soon_threadsafe`); requests talk to it through
`submit` and `Sequence.cancel`, which it honours at the next step. Other work
on the engine (a web page's traces) goes through `call`, which runs it in the
scheduler's thread between two steps: an engine is not safe to share between
threads (the NumPy engine reuses its buffers).

>>> from gpt2.config import Config
>>> from gpt2.params import init_params
>>> from gpt2.engines import load_engine
>>> from gpt2.generation import GenerationConfig
>>> cfg = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11, n_ctx=16)
>>> scheduler = Scheduler(load_engine("pure", cfg, init_params(cfg, seed=0)), max_batch=4)
>>> events = []
>>> seqs = [Sequence(i, [1, 2], GenerationConfig(max_new_tokens=3, temperature=0), sink=lambda i, e: events.append(e))
...         for i in range(2)]
>>> scheduler.submit(seqs)
>>> while scheduler.busy:
...     scheduler.run_step()
>>> [e.step.token for e in events if isinstance(e, Generated)][:2]  # both choices, greedy: the same token
[2, 2]
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from collections.abc import Sequence as Seq
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from ..engines.base import BatchEngine, Engine
from ..errors import Gpt2Error
from .errors import SERVER_ERROR, ApiError, internal_error, queue_full, unavailable
from .metrics import Metrics
from .rows import BatchRows, SingleRow
from .sequence import Ended, Event, Failed, Generated, PromptScored, Sequence

if TYPE_CHECKING:
    from ..tokenizer import Tokenizer
    from .logprobs import TokenLogprob

__all__ = ["Scheduler", "Sequence", "Event", "PromptScored", "Generated", "Ended", "Failed"]

log = logging.getLogger("gpt2.server")

PREFILL_TOKENS = 2048  # new positions in one prefill pass (bounds the activations' memory)


# --- the scheduler ---------------------------------------------------------------------------


class Scheduler:
    """See the module docstring. `start()` runs it in its own thread; `run_step()` is one
    iteration (tests and single-threaded callers drive it directly)."""

    def __init__(
        self,
        engine: Engine,
        tokenizer: Tokenizer | None = None,
        *,
        max_batch: int = 16,
        max_queue: int = 64,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.rows: BatchRows | SingleRow = (
            BatchRows(engine, max_batch) if isinstance(engine, BatchEngine) else SingleRow(engine)
        )
        self.n_ctx = engine.config.n_ctx
        self.max_queue = max_queue
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.live: list[Sequence] = []  # live[i] holds cache row i
        self._waiting: deque[Sequence] = deque()
        self._calls: deque[tuple[Callable[[Engine], Any], Future[Any]]] = deque()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._seconds_per_sequence = 1.0  # running mean, for Retry-After

    # --- from the request side (any thread) --------------------------------------------------

    @property
    def capacity(self) -> int:
        return self.rows.capacity

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    @property
    def batch_size(self) -> int:
        return len(self.live)

    @property
    def busy(self) -> bool:
        return bool(self._waiting or self.live or self._calls)

    def submit(self, sequences: Seq[Sequence]) -> None:
        """Queue a request's sequences, all or none: 429 when the queue cannot take them all."""
        with self._wake:
            if self._stopping:
                raise unavailable("the server is shutting down")
            if len(self._waiting) + len(sequences) > self.max_queue:
                raise queue_full(self.retry_after())
            self._waiting.extend(sequences)
            self._wake.notify()

    def call(self, fn: Callable[[Engine], Any]) -> Future[Any]:
        """Run `fn(engine)` in the scheduler's thread between two steps; the future holds its
        result (or exception). `await asyncio.wrap_future(scheduler.call(fn))` from a route."""
        future: Future[Any] = Future()
        with self._wake:
            if self._stopping:
                raise unavailable("the server is shutting down")
            self._calls.append((fn, future))
            self._wake.notify()
        return future

    def retry_after(self) -> int:
        """Seconds until a place is likely to free up (for 429 and 503 answers), 1 to 60."""
        ahead = len(self._waiting) + len(self.live)
        return max(1, math.ceil(min(60.0, self._seconds_per_sequence * ahead / self.capacity)))

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="gpt2-scheduler", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the current step, then refuse everything still waiting or running (503)."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        self._fail_all(unavailable("the server is shutting down"))

    # --- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._wake:
                    while not self._stopping and not self.busy:
                        self._wake.wait()
                    if self._stopping:
                        return
                try:
                    self.run_step()
                except Exception:  # a bug or an engine failure: the requests fail, the server lives on
                    log.exception("the scheduler's step failed; failing the sequences it was running")
                    self._fail_all(internal_error())
        finally:
            if not self._stopping:  # the thread is dying (SystemExit, ...): no request may wait forever
                log.error("the scheduler stopped unexpectedly; refusing requests from now on")
                with self._wake:
                    self._stopping = True
                self._fail_all(internal_error())

    def run_step(self) -> None:
        """One iteration: reap, admit (prefill, first token), decode one token for every live sequence."""
        self._run_calls()
        now = self.clock()
        self._reap(now)
        self._admit(now)
        if self.live:
            self._decode()
        self.metrics.busy_seconds += self.clock() - now

    def _run_calls(self) -> None:
        while True:
            with self._wake:
                if not self._calls:
                    return
                fn, future = self._calls.popleft()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(self.engine))
                except BaseException as exc:  # handed to the caller, who decides what it means
                    future.set_exception(exc)

    def _reap(self, now: float) -> None:
        for seq in list(self.live):
            if seq.cancelled:
                self.metrics.cancelled += 1
                self._remove(seq)
            elif now >= seq.deadline:
                self.metrics.timed_out += 1
                self._end(seq, "length")
        with self._wake:
            waiting = list(self._waiting)
            gone = [s for s in waiting if s.cancelled or now >= s.deadline]
            if gone:
                self._waiting = deque(s for s in waiting if s not in gone)
        for seq in gone:
            if seq.cancelled:
                self.metrics.cancelled += 1
            else:
                self.metrics.timed_out += 1
                self._emit(
                    seq,
                    Failed(
                        unavailable(
                            "the request reached its time limit while waiting for a place in the batch",
                            retry_after=self.retry_after(),
                            code="timeout",
                        )
                    ),
                )

    def _admit(self, now: float) -> None:
        """Take waiting sequences into free rows, prefill them, draw their first tokens."""
        with self._wake:
            taken: list[Sequence] = []
            while self._waiting and len(self.live) + len(taken) < self.capacity:
                taken.append(self._waiting.popleft())
        if not taken:
            return
        placed: list[Sequence] = []
        for seq in taken:
            seq.admitted_at = now
            if seq.decoder.finished and seq.prompt_logprobs is None:  # max_tokens 0: no work
                self._emit(seq, Ended("", "length"))
            else:
                placed.append(seq)
        # One representative per shared prompt is prefilled; its followers copy its row.
        leaders: dict[Hashable, Sequence] = {}
        followers: list[tuple[Sequence, Sequence]] = []
        for seq in placed:
            leader = leaders.setdefault(seq.group, seq) if seq.group is not None else seq
            if leader is not seq:
                followers.append((seq, leader))
        reps = [s for s in placed if all(s is not f for f, _ in followers)]
        for seq in reps + [f for f, _ in followers]:
            seq.row = len(self.live)
            self.live.append(seq)
        first: dict[int, Any] = {}  # id(seq) -> logits of its next position
        scored: dict[int, Any] = {}
        for batch in self._prefill_batches(reps):
            all_logits = batch[0].prompt_logprobs is not None
            start = self.clock()
            logits = self.rows.prefill(batch[0].row, [s.prompt_ids for s in batch], all_logits)
            self.metrics.prefill_seconds += self.clock() - start
            self.metrics.prefills += 1
            self.metrics.tokens(prompt=sum(len(s.prompt_ids) for s in batch))
            for seq, row in zip(batch, logits):
                first[id(seq)] = row[-1] if all_logits else row
                if all_logits:
                    scored[id(seq)] = self._prompt_entries(seq, row)
        for seq, leader in followers:
            self.rows.move(leader.row, seq.row)
            first[id(seq)] = first[id(leader)]
            if id(leader) in scored:
                scored[id(seq)] = scored[id(leader)]
        for seq in reps + [f for f, _ in followers]:
            if id(seq) in scored:
                self._emit(seq, PromptScored(scored[id(seq)]))
            if seq.decoder.finished:  # max_tokens 0 with echo + logprobs: the prompt was all
                self._end(seq, "length")
            else:
                self._sample(seq, first[id(seq)])

    def _prefill_batches(self, reps: list[Sequence]) -> list[list[Sequence]]:
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

    def _prompt_entries(self, seq: Sequence, logits: Any) -> list[TokenLogprob]:
        from .logprobs import prompt_logprobs

        if self.tokenizer is None:
            raise Gpt2Error("prompt log-probabilities need a tokenizer")
        return prompt_logprobs(self.tokenizer, seq.prompt_ids, logits, seq.prompt_logprobs or 0)

    def _decode(self) -> None:
        """One token for every live sequence (those admitted this step included: they join now)."""
        batch = list(self.live)
        start = self.clock()
        logits = self.rows.decode([s.token for s in batch])
        self.metrics.step(len(batch), self.clock() - start)
        for seq, row in zip(batch, logits):
            self._sample(seq, row)

    def _sample(self, seq: Sequence, logits: Any) -> None:
        try:
            step = seq.decoder.step(logits)
        except Gpt2Error as exc:  # e.g. NaN logits: this sequence fails, the others go on
            self._emit(seq, Failed(ApiError(500, str(exc), type=SERVER_ERROR)))
            self._remove(seq)
            return
        seq.tokens += 1
        seq.token = step.token
        self.metrics.tokens(generated=1)
        self._emit(seq, Generated(step))
        if step.finish_reason is not None:
            self._remove(seq)
        elif self.rows.length(seq.row) >= self.n_ctx:  # no room for the token just drawn
            self._end(seq, "length")

    def _end(self, seq: Sequence, reason: str) -> None:
        self._emit(seq, Ended(seq.decoder.finish(reason), reason))
        self._remove(seq)

    def _remove(self, seq: Sequence) -> None:
        """Free the sequence's row, keeping the live rows first: the last one moves into it."""
        row, last = seq.row, len(self.live) - 1
        if row < 0:
            return
        if row != last:
            moved = self.live[last]
            self.rows.move(last, row)
            moved.row = row
            self.live[row] = moved
        self.rows.clear(last)
        self.live.pop()
        seq.row = -1
        spent = self.clock() - seq.admitted_at
        self._seconds_per_sequence += 0.1 * (spent - self._seconds_per_sequence)

    def _emit(self, seq: Sequence, event: Event) -> None:
        try:
            seq.sink(seq.index, event)
        except Exception:  # the request's event loop is gone: nobody is listening any more
            seq.cancelled = True

    def _fail_all(self, error: ApiError) -> None:
        with self._wake:
            waiting, self._waiting = list(self._waiting), deque()
            calls, self._calls = list(self._calls), deque()
        for _, future in calls:
            if future.set_running_or_notify_cancel():
                future.set_exception(error)
        for seq in waiting + list(self.live):
            self._emit(seq, Failed(error))
        for seq in list(self.live):
            seq.row = -1
        self.live.clear()
        for row in range(self.capacity):
            self.rows.clear(row)
