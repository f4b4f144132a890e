"""The generation controls every engine, the Python API and the server share: penalties and logit
bias against a hand computation and against transformers' processors; stop strings across token
boundaries, streamed text equal to the whole; log-probabilities; recorded seeds."""

import math

import pytest

from gpt2.config import Config
from gpt2.engines import load_engine
from gpt2.errors import GenerationError
from gpt2.generation import Decoder, GenerationConfig, LogitAdjustments, Sampler, StopStrings, generate, stream
from gpt2.generation.adjust import TokenHistory, adjust
from gpt2.params import init_params
from gpt2.tokenizer import Tokenizer

TOK = Tokenizer.gpt2()


# --- penalties and bias ----------------------------------------------------------------------------


def hand_adjusted(logits, prompt, generated, rep, presence, frequency, bias):
    out = list(logits)
    for t in set(prompt) | set(generated):
        out[t] = out[t] * rep if out[t] < 0 else out[t] / rep
    for t in set(generated):
        c = generated.count(t)
        out[t] -= c * frequency + (c > 0) * presence
    for t, b in bias.items():
        out[t] += b
    return out


@pytest.mark.parametrize(
    "rep, presence, frequency, bias",
    [(1.3, 0.0, 0.0, {}), (1.0, 0.6, 0.0, {}), (1.0, 0.0, 0.4, {}), (0.8, -0.5, 1.5, {3: -100.0, 7: 2.5})],
)
def test_adjustments_match_the_definitions_on_lists_and_arrays(rep, presence, frequency, bias):
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(1)
    logits = (rng.standard_normal(20) * 3).astype(np.float32)
    prompt, generated = [1, 2, 2, 9], [2, 5, 5, 5, 11]
    history = TokenHistory(prompt)
    for t in generated:
        history.add(t)
    adj = LogitAdjustments(rep, presence, frequency, bias)
    expected = hand_adjusted(logits.tolist(), prompt, generated, rep, presence, frequency, bias)
    assert adjust(logits.tolist(), adj, history) == pytest.approx(expected, abs=1e-9)
    np.testing.assert_allclose(adjust(logits, adj, history), expected, rtol=1e-6, atol=1e-5)
    assert adjust(logits.tolist(), LogitAdjustments(), history) == logits.tolist()  # off: unchanged


def test_repetition_penalty_matches_transformers():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    ids = torch.tensor([[4, 1, 1, 17, 8]])
    scores = torch.randn(1, 30, generator=torch.Generator().manual_seed(0)) * 4
    expected = transformers.RepetitionPenaltyLogitsProcessor(1.7)(ids, scores.clone())[0]
    ours = adjust(scores[0].tolist(), LogitAdjustments(repetition_penalty=1.7), TokenHistory(ids[0].tolist()))
    assert ours == pytest.approx(expected.tolist(), abs=1e-5)


@pytest.mark.parametrize(
    "bad",
    [
        dict(repetition_penalty=0.0),
        dict(repetition_penalty=float("nan")),
        dict(presence_penalty=float("inf")),
        dict(frequency_penalty="1"),
        dict(logit_bias={"5": 1.0}),
        dict(logit_bias={-1: 1.0}),
        dict(logit_bias={5: float("nan")}),
        dict(stop=("",)),
        dict(stop=("a",) * 17),
        dict(logprobs=21),
        dict(logprobs=-1),
        dict(seed=-1),
        dict(max_new_tokens=-1),
        dict(temperature=-1.0),
    ],
)
def test_bad_settings_are_typed_errors(bad):
    with pytest.raises(GenerationError):
        GenerationConfig(**bad)


# --- stop strings ----------------------------------------------------------------------------------


def feed_all(stops, pieces):
    matcher = StopStrings(stops)
    out = "".join(matcher.feed(p) for p in pieces)
    return out + matcher.flush(), matcher.matched


@pytest.mark.parametrize(
    "pieces, stops, expected, matched",
    [
        (["Hello", " wor", "ld. The", " end"], ["world"], "Hello ", "world"),
        (["a<", "|e", "nd|>b"], ["<|end|>"], "a", "<|end|>"),
        (["no stop", " here"], ["xyz"], "no stop here", None),
        (["ab", "ab", "c"], ["abc"], "ab", "abc"),  # a false start, then the real one
        (["x\n", "\ny"], ["\n\n", "y"], "x", "\n\n"),  # the first complete of several
        (["abc"], ["bc", "abcd"], "a", "bc"),
        (["a\na"], ["\n", "a\na"], "a", "\n"),  # complete first, though it starts later
        (["xabc"], ["abc", "bc"], "x", "abc"),  # both end together: the longer
        (["tail: ab"], ["abc"], "tail: ab", None),  # held back, then released at the end
    ],
)
def test_stop_strings_are_found_across_pieces(pieces, stops, expected, matched):
    assert feed_all(stops, pieces) == (expected, matched)


def test_stop_strings_cut_the_same_text_however_it_is_split():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=300, deadline=None)
    @hypothesis.given(
        st.text("ab\n!", max_size=30), st.lists(st.text("ab\n!", min_size=1, max_size=4), max_size=3), st.data()
    )
    def check(text, stops, data):
        cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
        pieces = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)])]
        # read one character at a time: stop where a stop string is first complete
        ends = [(e, e - len(s)) for e in range(len(text) + 1) for s in stops if text[:e].endswith(s)]
        whole = text[: min(ends)[1]] if ends else text
        assert feed_all(stops, pieces)[0] == whole

    check()


# --- the decoder and the loop ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine():
    config = Config(n_layer=2, n_embd=16, n_head=2, vocab_size=50257, n_ctx=32)
    return load_engine("pure", config, init_params(config, seed=3))


def test_stream_text_is_the_decoded_ids_and_stop_strings_span_tokens(engine):
    prompt = TOK.encode("Once upon a time")
    free = list(stream(engine, prompt, GenerationConfig(max_new_tokens=12, seed=4, stop_ids=()), TOK))
    ids = [s.token for s in free]
    assert "".join(s.text for s in free) == TOK.decode(ids) and free[-1].finish_reason == "length"
    pieces = [TOK.decode([t]) for t in ids]
    # a stop string made of the end of one token's text and the start of the next one's
    k = next(i for i in range(2, len(pieces) - 1) if len(pieces[i]) > 1 and pieces[i + 1])
    stop = pieces[k][-1] + pieces[k + 1][0]
    text = TOK.decode(ids)
    config = GenerationConfig(max_new_tokens=12, seed=4, stop_ids=(), stop=(stop,))
    steps = list(stream(engine, prompt, config, TOK))
    assert "".join(s.text for s in steps) == text[: text.index(stop)]
    assert steps[-1].finish_reason == "stop" and len(steps) <= k + 2


def test_a_stop_id_ends_generation_and_is_not_output(engine):
    prompt = TOK.encode("Hello")
    free = list(generate(engine, prompt, 8, Sampler(seed=9), stop_ids=()))
    config = GenerationConfig(max_new_tokens=8, seed=9, stop_ids=(free[3],))
    steps = list(stream(engine, prompt, config, TOK))
    assert [s.token for s in steps[:-1]] == free[: free.index(free[3])]
    assert steps[-1].token == free[3] and steps[-1].text == "" and steps[-1].finish_reason == "stop"


def test_logprobs_are_the_models_own_and_top_alternatives_are_ordered(engine):
    prompt = TOK.encode("The")
    config = GenerationConfig(max_new_tokens=3, seed=1, logprobs=5, temperature=0.7, repetition_penalty=1.5)
    steps = list(stream(engine, prompt, config, TOK))
    cache = engine.new_cache()
    logits = engine.forward(prompt, cache)
    for step in steps:
        top = max(logits)
        log_total = top + math.log(math.fsum(math.exp(v - top) for v in logits))
        assert step.logprob == pytest.approx(logits[step.token] - log_total, abs=1e-9)  # before penalties
        assert [t for t, _ in step.top] == sorted(range(len(logits)), key=lambda i: (-logits[i], i))[:5]
        logits = engine.forward([step.token], cache)


def test_an_unseeded_decoder_records_the_seed_that_repeats_it(engine):
    prompt = TOK.encode("A")
    first = Decoder(prompt, GenerationConfig(max_new_tokens=5))
    again = Decoder(prompt, GenerationConfig(max_new_tokens=5, seed=first.seed))
    assert isinstance(first.seed, int)
    cache_a, cache_b = engine.new_cache(), engine.new_cache()
    la, lb = engine.forward(prompt, cache_a), engine.forward(prompt, cache_b)
    while not first.finished:
        a, b = first.step(la), again.step(lb)
        assert a.token == b.token
        if not first.finished:
            la, lb = engine.forward([a.token], cache_a), engine.forward([b.token], cache_b)


def test_logit_bias_outside_the_vocabulary_is_refused(engine):
    with pytest.raises(GenerationError, match="outside the vocabulary"):
        list(stream(engine, [1], GenerationConfig(logit_bias={60000: 1.0})))


def test_a_bias_of_plus_100_forces_a_token(engine):
    steps = list(stream(engine, [1, 2], GenerationConfig(max_new_tokens=4, logit_bias={42: 100.0}, seed=0)))
    assert [s.token for s in steps] == [42] * 4
