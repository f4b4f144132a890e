"""The continuous-batching scheduler, driven step by step (no HTTP, no threads): a sequence's
tokens do not depend on what runs beside it, rows are freed and refilled correctly, and the
time limit, the queue limit and cancellation do what they say."""

import math

import pytest

from gpt2.errors import Gpt2Error
from gpt2.generation import GenerationConfig, stream
from gpt2.generation.errors import QueueFull, QueueTimeout, SchedulerFailed, ShuttingDown
from gpt2.generation.scheduler import Ended, Failed, Generated, PromptScored, Scheduler, Sequence

np = pytest.importorskip("numpy")


@pytest.fixture(scope="module")
def engine64(kit):
    """The kit's model on the NumPy engine in float64: a batched product and a single-row one
    then agree to ~1e-15, so greedy and seeded choices are identical in practice."""
    from gpt2.engines import load_engine

    return load_engine("numpy", kit.config, kit.params, dtype="float64")


def scorer(tokenizer):
    """The server's prompt scorer (OpenAI's logprobs entries), as `gpt2 serve` gives its scheduler."""
    import functools

    from gpt2.server.logprobs import prompt_logprobs

    return functools.partial(prompt_logprobs, tokenizer)


class Recorder:
    """Collects each sequence's events (the sink the server would post to its event loop)."""

    def __init__(self):
        self.events = {}

    def __call__(self, index, event):
        self.events.setdefault(index, []).append(event)

    def tokens(self, index):
        return [e.step.token for e in self.events.get(index, []) if isinstance(e, Generated)]

    def steps(self, index):
        return [e.step for e in self.events.get(index, []) if isinstance(e, Generated)]


def config(n=12, **kw):
    kw.setdefault("temperature", 0.0)
    return GenerationConfig(max_new_tokens=n, stop_ids=(), **kw)


def alone(engine, prompt, generation):
    """What `gpt2.generation.stream` makes of one sequence on its own."""
    return [s.token for s in stream(engine, prompt, generation)]


def run_all(scheduler, limit=1000):
    for _ in range(limit):
        if not scheduler.busy:
            return
        scheduler.run_step()
    raise AssertionError("the scheduler did not finish")


PROMPTS = [[3, 14, 15, 92, 65], [35, 8], [9, 79, 3, 2, 38, 46, 26], [43], [38, 32, 79, 50, 28]]


def test_batched_sequences_equal_each_sequence_alone(engine64):
    """Greedy and seeded sampling, prompts of different lengths, arriving at different steps."""
    configs = [
        config(),
        config(temperature=1.0, top_k=20, seed=5),
        config(9),
        config(temperature=0.7, seed=1),
        config(4),
    ]
    rec = Recorder()
    scheduler = Scheduler(engine64, max_batch=4)
    seqs = [Sequence(i, p, c, sink=rec) for i, (p, c) in enumerate(zip(PROMPTS, configs))]
    scheduler.submit(seqs[:2])
    scheduler.run_step()
    scheduler.run_step()
    scheduler.submit(seqs[2:])  # three more join a running batch of two; one waits for a row
    sizes = []
    while scheduler.busy:
        scheduler.run_step()
        sizes.append(scheduler.batch_size)
    assert max(sizes) == 4  # the batch was full, then drained
    for i, (p, c) in enumerate(zip(PROMPTS, configs)):
        assert rec.tokens(i) == alone(engine64, p, c), i


def test_float32_logits_agree_within_tolerance_alone_or_batched(kit):
    """In float32 a batched product sums in another order than a single-row one: the log-probabilities
    agree to float32 rounding, and a token may differ only where the top two were a near-tie."""
    engine = kit.engines["numpy"]
    generation = config(16, logprobs=5)
    rec = Recorder()
    scheduler = Scheduler(engine, max_batch=8)
    scheduler.submit([Sequence(i, p, generation, sink=rec) for i, p in enumerate(PROMPTS)])
    run_all(scheduler)
    for i, prompt in enumerate(PROMPTS):
        reference = list(stream(engine, prompt, generation))
        for mine, ref in zip(rec.steps(i), reference):
            assert mine.logprob == pytest.approx(ref.logprob, abs=1e-4)
            if mine.token != ref.token:  # allowed only on a near-tie, after which the texts part
                assert ref.top[0][1] - ref.top[1][1] < 1e-4
                break
            assert [t for t, _ in mine.top[:2]] == [t for t, _ in ref.top[:2]] or (
                abs(ref.top[1][1] - ref.top[2][1]) < 1e-4
            )


def test_a_finished_row_is_refilled_and_the_others_keep_their_cache(engine64):
    """Short sequences finish first; the last live row moves into their place (copy_row): the
    moved sequences must go on exactly as they would alone."""
    lengths = [3, 12, 2, 10, 5, 12]
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(len(lengths))]
    rec = Recorder()
    scheduler = Scheduler(engine64, max_batch=4)
    scheduler.submit([Sequence(i, p, config(n), sink=rec) for i, (p, n) in enumerate(zip(prompts, lengths))])
    run_all(scheduler)
    for i, (p, n) in enumerate(zip(prompts, lengths)):
        assert rec.tokens(i) == alone(engine64, p, config(n)), i
    assert scheduler.batch_size == 0 and scheduler.queue_depth == 0
    assert list(scheduler.rows.cache.lengths) == [0, 0, 0, 0]  # every row cleared


def test_a_cancelled_sequence_leaves_at_the_next_step(engine64):
    rec = Recorder()
    scheduler = Scheduler(engine64, max_batch=4)
    seqs = [Sequence(i, p, config(20), sink=rec) for i, p in enumerate(PROMPTS[:3])]
    scheduler.submit(seqs)
    scheduler.run_step()
    scheduler.run_step()
    heard = len(rec.events[1])
    seqs[1].cancel()
    scheduler.run_step()
    assert scheduler.batch_size == 2 and seqs[1].row == -1
    assert len(rec.events[1]) == heard  # nothing more for a client that is gone
    run_all(scheduler)
    assert scheduler.metrics.cancelled == 1
    for i in (0, 2):
        assert rec.tokens(i) == alone(engine64, PROMPTS[i], config(20))


def test_n_choices_of_one_prompt_share_one_prefill(engine64):
    rec = Recorder()
    scheduler = Scheduler(engine64, max_batch=4)
    configs = [config(8, temperature=1.0, seed=s) for s in (10, 11, 12)]
    scheduler.submit([Sequence(i, PROMPTS[0], c, sink=rec, group="request") for i, c in enumerate(configs)])
    run_all(scheduler)
    assert scheduler.metrics.prefills == 1
    for i, c in enumerate(configs):
        assert rec.tokens(i) == alone(engine64, PROMPTS[0], c)
    assert len({tuple(rec.tokens(i)) for i in range(3)}) > 1  # different seeds, different samples


def test_prompts_of_one_length_are_prefilled_together(engine64):
    rec = Recorder()
    scheduler = Scheduler(engine64, max_batch=4)
    same = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    scheduler.submit([Sequence(i, p, config(3), sink=rec) for i, p in enumerate(same)])
    run_all(scheduler)
    assert scheduler.metrics.prefills == 1
    for i, p in enumerate(same):
        assert rec.tokens(i) == alone(engine64, p, config(3))


def test_the_time_limit_ends_a_running_sequence_and_fails_a_waiting_one(engine64):
    now = [0.0]
    rec = Recorder()
    scheduler = Scheduler(engine64, max_batch=1, clock=lambda: now[0])
    running = Sequence(0, PROMPTS[0], config(30), sink=rec, deadline=5.0)
    waiting = Sequence(1, PROMPTS[1], config(30), sink=rec, deadline=5.0)
    scheduler.submit([running, waiting])
    for _ in range(3):
        scheduler.run_step()
    now[0] = 6.0
    scheduler.run_step()
    assert not scheduler.busy
    end = rec.events[0][-1]
    assert isinstance(end, Ended) and end.reason == "length"
    assert 0 < len(rec.tokens(0)) < 30
    (failure,) = rec.events[1]
    assert isinstance(failure, Failed) and isinstance(failure.error, QueueTimeout)
    assert failure.error.retry_after >= 1


def test_a_full_queue_refuses_with_queue_full_and_retry_after(engine64):
    scheduler = Scheduler(engine64, max_batch=1, max_queue=2)
    rec = Recorder()
    scheduler.submit([Sequence(0, [1], config(), sink=rec), Sequence(1, [2], config(), sink=rec)])
    with pytest.raises(QueueFull) as info:
        scheduler.submit([Sequence(2, [3], config(), sink=rec)])
    assert info.value.retry_after >= 1
    assert scheduler.queue_depth == 2  # all or nothing: the refused request left no trace


def test_echo_scores_the_prompt_as_scoring_does(engine64, kit):
    from gpt2.scoring import score
    from gpt2.tokenizer import Tokenizer

    rec = Recorder()
    scheduler = Scheduler(engine64, scorer(Tokenizer.gpt2()), max_batch=2)
    scheduler.submit([Sequence(0, PROMPTS[2], config(0, logprobs=3), sink=rec, prompt_logprobs=3)])
    run_all(scheduler)
    scored, ended = rec.events[0]
    assert isinstance(scored, PromptScored) and isinstance(ended, Ended)
    entries = scored.entries
    assert entries[0].logprob is None and entries[0].top is None
    expected = score(engine64, PROMPTS[2]).logprobs
    assert [e.logprob for e in entries[1:]] == pytest.approx(expected, abs=1e-9)
    assert all(len(e.top) == 3 and max(e.top.values()) >= e.logprob - 1e-12 for e in entries[1:])


def test_max_tokens_zero_costs_no_forward_pass(engine64):
    rec = Recorder()
    scheduler = Scheduler(engine64)
    scheduler.submit([Sequence(0, [1, 2], config(0), sink=rec)])
    run_all(scheduler)
    assert scheduler.metrics.prefills == 0
    assert [type(e) for e in rec.events[0]] == [Ended]


def test_an_engine_without_batches_runs_one_sequence_at_a_time(kit):
    engine = kit.engines["pure"]
    rec = Recorder()
    scheduler = Scheduler(engine, max_batch=8)
    assert scheduler.capacity == 1
    scheduler.submit([Sequence(i, p, config(5), sink=rec) for i, p in enumerate(PROMPTS[:2])])
    sizes = []
    while scheduler.busy:
        scheduler.run_step()
        sizes.append(scheduler.batch_size)
    assert max(sizes) == 1
    for i in range(2):
        assert rec.tokens(i) == alone(engine, PROMPTS[i], config(5))


class FailOnce:
    """An engine whose third batched pass raises, as a bug or a device error would."""

    def __init__(self, engine):
        self.engine, self.config, self.name, self.calls = engine, engine.config, "failing", 0

    def __getattr__(self, name):  # the rest of the engine contract (notices, kv_bytes_per_position, ...)
        return getattr(self.engine, name)

    def new_cache(self):
        return self.engine.new_cache()

    def forward(self, ids, cache, *, all_logits=False):
        return self.engine.forward(ids, cache, all_logits=all_logits)

    def close(self):
        pass

    def new_batch_cache(self, n):
        return self.engine.new_batch_cache(n)

    def forward_batch(self, rows, cache, *, all_logits=False):
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("boom")
        return self.engine.forward_batch(rows, cache, all_logits=all_logits)


def test_an_engine_failure_fails_the_running_sequences_and_the_scheduler_goes_on(engine64):
    import threading

    rec = Recorder()
    done = threading.Event()
    scheduler = Scheduler(FailOnce(engine64), max_batch=2)
    scheduler.start()
    try:
        scheduler.submit([Sequence(0, [1, 2], config(10), sink=rec)])
        for _ in range(500):
            if rec.events.get(0) and isinstance(rec.events[0][-1], Failed):
                break
            done.wait(0.01)
        failure = rec.events[0][-1]
        assert isinstance(failure, Failed) and isinstance(failure.error, SchedulerFailed)
        assert "boom" not in str(failure.error)  # the client never sees the internals
        scheduler.submit([Sequence(1, [1, 2], config(3), sink=rec)])
        for _ in range(500):
            if len(rec.tokens(1)) == 3:
                break
            done.wait(0.01)
        assert rec.tokens(1) == alone(engine64, [1, 2], config(3))
    finally:
        scheduler.stop()


def test_call_runs_work_on_the_engine_between_steps(engine64):
    scheduler = Scheduler(engine64)
    future = scheduler.call(lambda engine: engine.config.n_ctx)
    assert scheduler.busy
    scheduler.run_step()
    assert future.result(timeout=0) == engine64.config.n_ctx


def test_stop_refuses_what_is_left(engine64):
    rec = Recorder()
    scheduler = Scheduler(engine64, max_batch=1)
    scheduler.submit([Sequence(0, [1], config(), sink=rec), Sequence(1, [2], config(), sink=rec)])
    scheduler.run_step()
    scheduler.stop()
    assert isinstance(rec.events[0][-1], Failed) and isinstance(rec.events[0][-1].error, ShuttingDown)
    assert isinstance(rec.events[1][-1], Failed)
    with pytest.raises(ShuttingDown):
        scheduler.submit([Sequence(2, [3], config(), sink=rec)])


def test_a_sequence_needs_a_prompt():
    with pytest.raises(Gpt2Error):
        Sequence(0, [], config(), sink=lambda i, e: None)


def test_retry_after_is_bounded(engine64):
    scheduler = Scheduler(engine64, max_batch=2)
    assert 1 <= scheduler.retry_after() <= 60
    scheduler._seconds_per_sequence = math.inf
    scheduler.submit([Sequence(0, [1], config(), sink=lambda i, e: None)])
    assert scheduler.retry_after() == 60


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the SystemExit, on purpose
def test_a_dying_scheduler_thread_fails_what_it_held_and_refuses_more(engine64):
    class Exit:  # an engine whose pass raises SystemExit: not an Exception, the thread ends
        def __init__(self, engine):
            self.config, self.name, self.engine = engine.config, "exit", engine

        def new_cache(self):
            return self.engine.new_cache()

        def forward(self, ids, cache, *, all_logits=False):
            raise SystemExit

        def close(self):
            pass

    rec = Recorder()
    scheduler = Scheduler(Exit(engine64))
    scheduler.start()
    scheduler.submit([Sequence(0, [1, 2], config(3), sink=rec)])
    scheduler._thread.join(30)
    assert not scheduler._thread.is_alive()
    assert isinstance(rec.events[0][-1], Failed) and isinstance(rec.events[0][-1].error, SchedulerFailed)
    with pytest.raises(ShuttingDown):
        scheduler.submit([Sequence(1, [1], config(), sink=rec)])


# --- chunked prefill ----------------------------------------------------------------------------

LONG = [(7 * i + 3) % 97 for i in range(30)]  # a prompt of 30 tokens: several chunks of a few


def run_steps(scheduler, rec, indices):
    """Step until idle; the tokens each of `indices` has after every step."""
    history = []
    while scheduler.busy:
        scheduler.run_step()
        history.append([len(rec.tokens(i)) for i in indices])
    return history


@pytest.mark.parametrize("chunk", [1, 4, 7, 29])
def test_a_prompt_prefilled_in_chunks_gives_the_tokens_of_one_prefill(engine64, chunk):
    """Greedy and seeded choices, long and short prompts, two long ones queued behind each other:
    token for token what one prefill gives (a scheduler that never chunks, and each sequence alone)."""
    prompts = [LONG, PROMPTS[0], LONG[3:], PROMPTS[1], LONG[: chunk + 1], PROMPTS[2]]
    configs = [config(10), config(8, temperature=1.0, seed=3), config(9, temperature=0.7, seed=2)] * 2
    outputs = {}
    for prefill_chunk in (chunk, 10_000):
        rec = Recorder()
        scheduler = Scheduler(engine64, max_batch=4, prefill_chunk=prefill_chunk)
        scheduler.submit([Sequence(i, p, c, sink=rec) for i, (p, c) in enumerate(zip(prompts, configs))])
        run_all(scheduler)
        assert scheduler.batch_size == 0 and list(scheduler.rows.cache.lengths) == [0, 0, 0, 0]
        outputs[prefill_chunk] = [rec.tokens(i) for i in range(len(prompts))]
        if prefill_chunk == chunk:
            chunked_passes = scheduler.metrics.prefills
        else:
            assert scheduler.metrics.prefills < chunked_passes  # the chunks were separate passes
    assert outputs[chunk] == outputs[10_000]
    for i, (p, c) in enumerate(zip(prompts, configs)):
        assert outputs[chunk][i] == alone(engine64, p, c), i


def test_running_streams_keep_getting_tokens_while_a_long_prompt_is_prefilled(engine64):
    rec = Recorder()
    scheduler = Scheduler(engine64, max_batch=4, prefill_chunk=4)
    short = [PROMPTS[1], PROMPTS[3]]  # at most 4 tokens: prefilled whole
    scheduler.submit([Sequence(i, p, config(20), sink=rec) for i, p in enumerate(short)])
    scheduler.run_step()
    assert [len(rec.tokens(i)) for i in (0, 1)] == [2, 2]  # the prefill's token, then a decoding step's
    scheduler.submit([Sequence(2, LONG, config(5), sink=rec)])  # 30 tokens: 8 chunks of at most 4
    passes = scheduler.metrics.prefills
    for step in range(1, 9):
        scheduler.run_step()
        assert [len(rec.tokens(i)) for i in (0, 1)] == [2 + step] * 2  # a token every step, none skipped
        assert scheduler.metrics.prefills == passes + step  # one chunk a step
        assert len(rec.tokens(2)) == (2 if step == 8 else 0)  # its first token after its last chunk
        assert scheduler.batch_size == (3 if step == 8 else 2)
    run_all(scheduler)
    assert rec.tokens(2) == alone(engine64, LONG, config(5))
    for i, p in enumerate(short):
        assert rec.tokens(i) == alone(engine64, p, config(20))


def test_one_long_prompt_is_prefilled_at_a_time_and_short_ones_overtake_the_next(engine64):
    rec = Recorder()
    scheduler = Scheduler(engine64, max_batch=4, prefill_chunk=8)
    seqs = [Sequence(0, LONG, config(3), sink=rec), Sequence(1, LONG[1:], config(3), sink=rec)]
    seqs.append(Sequence(2, PROMPTS[0], config(3), sink=rec))
    scheduler.submit(seqs)
    scheduler.run_step()
    assert scheduler.queue_depth == 1  # the second long prompt waits for the first one's chunks
    assert len(rec.tokens(2)) == 2 and rec.tokens(0) == [] == rec.tokens(1)  # the short one went ahead
    history = run_steps(scheduler, rec, (0, 1))
    first_0 = next(n for n, (a, _) in enumerate(history) if a)
    first_1 = next(n for n, (_, b) in enumerate(history) if b)
    assert first_0 < first_1
    for i, seq in enumerate(seqs):
        assert rec.tokens(i) == alone(engine64, seq.prompt_ids, config(3))


def test_the_n_choices_of_a_long_prompt_share_its_chunks(engine64):
    rec = Recorder()
    scheduler = Scheduler(engine64, max_batch=4, prefill_chunk=8)
    configs = [config(6, temperature=1.0, seed=s) for s in (20, 21, 22)]
    scheduler.submit([Sequence(i, LONG, c, sink=rec, group="request") for i, c in enumerate(configs)])
    run_all(scheduler)
    assert scheduler.metrics.prefills == 4  # 8 + 8 + 8 + 6 tokens, once for the three
    for i, c in enumerate(configs):
        assert rec.tokens(i) == alone(engine64, LONG, c)


def test_echo_of_a_prompt_prefilled_in_chunks_scores_it_as_one_prefill(engine64):
    from gpt2.scoring import score
    from gpt2.tokenizer import Tokenizer

    rec = Recorder()
    scheduler = Scheduler(engine64, scorer(Tokenizer.gpt2()), max_batch=2, prefill_chunk=7)
    scheduler.submit([Sequence(0, LONG, config(4, logprobs=2), sink=rec, prompt_logprobs=2)])
    run_all(scheduler)
    scored = rec.events[0][0]
    assert isinstance(scored, PromptScored) and len(scored.entries) == len(LONG)
    assert [e.logprob for e in scored.entries[1:]] == pytest.approx(score(engine64, LONG).logprobs, abs=1e-9)
    assert rec.tokens(0) == alone(engine64, LONG, config(4))


def test_an_engine_without_batches_prefills_in_chunks_too(kit):
    engine = kit.engines["pure"]
    rec = Recorder()
    scheduler = Scheduler(engine, prefill_chunk=6)
    scheduler.submit([Sequence(0, LONG[:20], config(4), sink=rec), Sequence(1, PROMPTS[0], config(4), sink=rec)])
    run_all(scheduler)
    assert scheduler.metrics.prefills == 4 + 1
    assert rec.tokens(0) == alone(engine, LONG[:20], config(4))
    assert rec.tokens(1) == alone(engine, PROMPTS[0], config(4))


def test_a_long_prompt_cancelled_or_out_of_time_while_prefilled_frees_its_place(engine64):
    now = [0.0]
    rec = Recorder()
    scheduler = Scheduler(engine64, max_batch=2, prefill_chunk=4, clock=lambda: now[0])
    cancelled = Sequence(0, LONG, config(5), sink=rec)
    late = Sequence(1, LONG[2:], config(5), sink=rec, deadline=5.0)
    scheduler.submit([cancelled, late])
    scheduler.run_step()
    cancelled.cancel()
    scheduler.run_step()  # gone before its next chunk; the next long prompt starts
    assert 0 not in rec.events and scheduler.metrics.cancelled == 1
    now[0] = 6.0
    scheduler.run_step()
    (end,) = rec.events[1]
    assert isinstance(end, Ended) and end.reason == "length" and end.text == ""
    assert not scheduler.busy and scheduler.metrics.timed_out == 1
    assert list(scheduler.rows.cache.lengths) == [0, 0]
    after = Sequence(2, LONG, config(3), sink=rec)
    scheduler.submit([after])
    run_all(scheduler)
    assert rec.tokens(2) == alone(engine64, LONG, config(3))


def test_an_engine_failure_during_a_chunked_prefill_fails_its_sequence(engine64):
    import threading

    rec = Recorder()
    done = threading.Event()
    scheduler = Scheduler(FailOnce(engine64), max_batch=2, prefill_chunk=4)  # the third chunk fails
    scheduler.start()
    try:
        scheduler.submit([Sequence(0, LONG, config(3), sink=rec)])
        for _ in range(500):
            if rec.events.get(0):
                break
            done.wait(0.01)
        (failure,) = rec.events[0]
        assert isinstance(failure, Failed) and isinstance(failure.error, SchedulerFailed)
        scheduler.submit([Sequence(1, LONG[:9], config(3), sink=rec)])
        for _ in range(500):
            if len(rec.tokens(1)) == 3:
                break
            done.wait(0.01)
        assert rec.tokens(1) == alone(engine64, LONG[:9], config(3))
    finally:
        scheduler.stop()


@pytest.mark.parametrize("bad", [0, -4, 2.5, True, "8", None])
def test_a_bad_prefill_chunk_is_refused_in_one_line(engine64, bad):
    from gpt2.errors import GenerationError
    from gpt2.server import ServerSettings
    from gpt2.server.errors import ServerError

    with pytest.raises(GenerationError, match=r"^prefill_chunk must be an integer >= 1, got "):
        Scheduler(engine64, prefill_chunk=bad)
    with pytest.raises(ServerError, match=r"^prefill_chunk must be an integer >= 1, got "):
        ServerSettings(prefill_chunk=bad)
