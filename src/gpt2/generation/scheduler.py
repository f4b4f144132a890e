"""Continuous batching: one thread owns the engine and runs every live sequence as one batch.

Each completion choice is a `Sequence` (`sequence.py`, with the events it hears)
with its own `gpt2.generation.Decoder` (its own sampler, seed, penalties, stop
strings). The scheduler thread loops:

1. reap: sequences whose client went away, or whose time limit passed, leave;
2. admit: waiting sequences take the free rows of the batched KV cache and
   are prefilled (new prompts of one length in one pass; the `n` choices of
   one prompt share one prefill, its cache row copied to theirs), then each
   picks its first token; a prompt longer than `prefill_chunk` tokens starts
   a chunked prefill instead;
3. prefill a chunk: the long prompt being prefilled takes its next
   `prefill_chunk` tokens; after its last chunk its sequences join the batch
   (and pick their first token) as admitted ones do;
4. decode: every live sequence feeds its last token through ONE
   `engine.forward_batch` (rows holding different numbers of positions); each
   decoder adjusts its own row of logits (penalties, bias), and every row's
   token is drawn in one vectorised pass (`gpt2.generation.vectorised.sample_rows`),
   each row with its own sampler and RNG.

Live sequences keep rows 0..n-1 of the cache (`cache.rows(n)` is the batch);
when one finishes, the last live row is copied into its place (`copy_row`) and
the last row cleared (`clear_row`). A sequence's tokens therefore depend only
on its own logits and its own sampler: the same text alone or beside others
(up to float rounding: a batched product may sum in another order than a
single-row one, which can flip a near-tie; in float64 that never happens in
practice). An engine without batches (the pure engine) runs one sequence at a
time.

A long prompt is prefilled a chunk per step (`prefill.py`), so the running
streams keep getting a token every step meanwhile instead of waiting for the
whole prompt. One long prompt is prefilled at a time, in the cache's last row
(never one of the decoding rows 0..n-1); its sequences count against the
batch's capacity from admission on. Other long prompts keep their place in the
queue, and shorter ones behind them are admitted. Chunked or not, a prompt's
logits are the same up to float rounding.

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
from collections.abc import Callable
from collections.abc import Sequence as Seq
from concurrent.futures import Future
from typing import Any

from ..engines.base import BatchEngine, Engine
from ..errors import Gpt2Error
from .decoder import Step
from .errors import QueueFull, QueueTimeout, SchedulerError, SchedulerFailed, ShuttingDown
from .logits import LIST, ops_for
from .prefill import DEFAULT_PREFILL_CHUNK, Prefiller, PromptScorer, Ready, check_prefill_chunk
from .rows import BatchRows, SingleRow
from .sequence import Ended, Event, Failed, Generated, PromptScored, Sequence
from .stats import SchedulerStats

__all__ = ["Scheduler", "Sequence", "Event", "PromptScored", "Generated", "Ended", "Failed"]

log = logging.getLogger("gpt2.generation.scheduler")


# --- the scheduler ---------------------------------------------------------------------------


class Scheduler:
    """See the module docstring. `start()` runs it in its own thread; `run_step()` is one
    iteration (tests and single-threaded callers drive it directly). `prefill_chunk`: the
    most prompt tokens prefilled in one step for a prompt longer than that."""

    def __init__(
        self,
        engine: Engine,
        score_prompt: PromptScorer | None = None,
        *,
        max_batch: int = 16,
        max_queue: int = 64,
        metrics: SchedulerStats | None = None,
        clock: Callable[[], float] = time.monotonic,
        prefill_chunk: int = DEFAULT_PREFILL_CHUNK,
    ) -> None:
        check_prefill_chunk(prefill_chunk)  # before the cache is allocated
        self.engine = engine
        self.logits = ops_for(engine)  # the kind of logits its engine returns, known once
        self.rows: BatchRows | SingleRow = (
            BatchRows(engine, max_batch) if isinstance(engine, BatchEngine) else SingleRow(engine)
        )
        self.n_ctx = engine.config.n_ctx
        self.max_queue = max_queue
        self.metrics = metrics or SchedulerStats()
        self.clock = clock
        self.prefiller = Prefiller(self.rows, self.metrics, clock, score_prompt, prefill_chunk)
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
        return bool(self._waiting or self.live or self._calls or self.prefiller.chunked)

    @property
    def _held(self) -> int:
        """Places taken in the batch: the live sequences', and those of the chunked prefill."""
        return len(self.live) + self.prefiller.held

    def submit(self, sequences: Seq[Sequence]) -> None:
        """Queue a request's sequences, all or none: QueueFull when the queue cannot take them
        all, ShuttingDown once stopped."""
        with self._wake:
            if self._stopping:
                raise ShuttingDown()
            if len(self._waiting) + len(sequences) > self.max_queue:
                raise QueueFull(self.retry_after())
            self._waiting.extend(sequences)
            self._wake.notify()

    def call(self, fn: Callable[[Engine], Any]) -> Future[Any]:
        """Run `fn(engine)` in the scheduler's thread between two steps; the future holds its
        result (or exception). `await asyncio.wrap_future(scheduler.call(fn))` from a route."""
        future: Future[Any] = Future()
        with self._wake:
            if self._stopping:
                raise ShuttingDown()
            self._calls.append((fn, future))
            self._wake.notify()
        return future

    def retry_after(self) -> int:
        """Seconds until a place is likely to free up (QueueFull, QueueTimeout), 1 to 60."""
        ahead = len(self._waiting) + self._held
        return max(1, math.ceil(min(60.0, self._seconds_per_sequence * ahead / self.capacity)))

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="gpt2-scheduler", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the current step, then refuse everything still waiting or running (ShuttingDown)."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        self._fail_all(ShuttingDown())

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
                    self._fail_all(SchedulerFailed())
        finally:
            if not self._stopping:  # the thread is dying (SystemExit, ...): no request may wait forever
                log.error("the scheduler stopped unexpectedly; refusing requests from now on")
                with self._wake:
                    self._stopping = True
                self._fail_all(SchedulerFailed())

    def run_step(self) -> None:
        """One iteration: reap, admit (prefill, first token), the next chunk of a long prompt,
        decode one token for every live sequence."""
        self._run_calls()
        now = self.clock()
        self._reap(now)
        self._admit(now)
        ready = self.prefiller.step(len(self.live))
        self.live.extend(seq for seq, _, _ in ready)
        self._start(ready)
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
        for seq in self.prefiller.drop(lambda s: s.cancelled or now >= s.deadline):  # admitted, in no row yet
            if seq.cancelled:
                self.metrics.cancelled += 1
            else:
                self.metrics.timed_out += 1
                self._emit(seq, Ended(seq.decoder.finish("length"), "length"))
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
                self._emit(seq, Failed(QueueTimeout(self.retry_after())))

    def _admit(self, now: float) -> None:
        """Take waiting sequences into free rows, prefill them, draw their first tokens; a long
        prompt starts its chunked prefill instead."""
        with self._wake:
            taken: list[Sequence] = []
            passed: list[Sequence] = []  # long prompts behind the one prefilled in chunks
            while self._waiting and self._held + len(taken) < self.capacity:
                seq = self._waiting.popleft()
                (passed if self.prefiller.must_wait(seq, taken) else taken).append(seq)
            self._waiting.extendleft(reversed(passed))
        if not taken:
            return
        placed: list[Sequence] = []
        for seq in taken:
            seq.admitted_at = now
            if seq.decoder.finished and seq.prompt_logprobs is None:  # max_tokens 0: no work
                self._emit(seq, Ended("", "length"))
            else:
                placed.append(seq)
        ordered = self.prefiller.place(placed, len(self.live))
        self.live.extend(ordered)  # live before their prefill: a failure there fails them too
        self._start(self.prefiller.prefill(ordered))

    def _start(self, ready: list[Ready]) -> None:
        """Prefilled sequences, in the batch now: each hears its prompt's log-probabilities
        (echo + logprobs), then draws its first token."""
        drawing: list[Sequence] = []
        first: list[Any] = []
        for seq, logits, scored in ready:
            if scored is not None:
                self._emit(seq, PromptScored(scored))
            if seq.decoder.finished:  # max_tokens 0 with echo + logprobs: the prompt was all
                self._end(seq, "length")
            else:
                drawing.append(seq)
                first.append(logits)
        if drawing:
            self._sample(drawing, first)

    def _decode(self) -> None:
        """One token for every live sequence (those admitted this step included: they join now)."""
        batch = list(self.live)
        start = self.clock()
        logits = self.rows.decode([s.token for s in batch])
        self.metrics.step(len(batch), self.clock() - start)
        self._sample(batch, logits)

    def _sample(self, batch: list[Sequence], logits: Any) -> None:
        """Each sequence's next token from its row of `logits`: lists of floats (an engine without
        batches) one by one through the decoder; arrays all at once, each row with its own
        sampler (`gpt2.generation.vectorised.sample_rows`). A row that fails (NaN logits) fails
        its sequence only."""
        if self.logits is LIST:
            for seq, row in zip(batch, logits):
                try:
                    step = seq.decoder.step(row)
                except Gpt2Error as exc:  # e.g. NaN logits: this sequence fails, the others go on
                    self._fail(seq, exc)
                else:
                    self._advance(seq, step)
            return
        from .vectorised import sample_rows  # NumPy: engines with arrays come with it

        rows, adjusted = [], []
        for seq, row in zip(batch, logits):
            try:
                adjusted.append(seq.decoder.adjusted(row))
                rows.append((seq, row))
            except Gpt2Error as exc:
                self._fail(seq, exc)
        if not rows:
            return
        same = all(a is r for a, (_, r) in zip(adjusted, rows)) and len(rows) == len(logits)
        tokens = sample_rows(logits if same else adjusted, [seq.decoder.sampler for seq, _ in rows], errors=True)
        for (seq, row), token in zip(rows, tokens):
            try:
                if isinstance(token, Gpt2Error):
                    raise token
                step = seq.decoder.accept(token, row)
            except Gpt2Error as exc:
                self._fail(seq, exc)
            else:
                self._advance(seq, step)

    def _fail(self, seq: Sequence, error: Gpt2Error) -> None:
        """The sequence fails (its logits held NaN, ...); the others go on."""
        self._emit(seq, Failed(error))
        self._remove(seq)

    def _advance(self, seq: Sequence, step: Step) -> None:
        """The sequence took `step`: emitted, and the sequence ends if it says so."""
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

    def _fail_all(self, error: SchedulerError) -> None:
        with self._wake:
            waiting, self._waiting = list(self._waiting), deque()
            calls, self._calls = list(self._calls), deque()
        for _, future in calls:
            if future.set_running_or_notify_cancel():
                future.set_exception(error)
        for seq in waiting + list(self.live) + self.prefiller.drop(lambda s: True):
            self._emit(seq, Failed(error))
        for seq in list(self.live):
            seq.row = -1
        self.live.clear()
        for row in range(self.capacity):
            self.rows.clear(row)
