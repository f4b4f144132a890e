"""The server's request checks and response bookkeeping, without a server (standard library only):
OpenAI's rules for each field, the limits that need the model, and which log-probabilities go out
with which text."""

import pytest

from gpt2.config import Config
from gpt2.generation import Step
from gpt2.server import ServerSettings
from gpt2.server.completions import prepare
from gpt2.server.errors import ApiError
from gpt2.server.logprobs import LogprobTrack
from gpt2.server.schemas import parse_completion, parse_json
from gpt2.tokenizer import Tokenizer

TOK = Tokenizer.gpt2()
CONFIG = Config(n_layer=1, n_embd=8, n_head=2, n_ctx=32)


def refused(fn, *args):
    with pytest.raises(ApiError) as info:
        fn(*args)
    return info.value


def params(**fields):
    return parse_completion({"model": "m", "prompt": "Hi", **fields})


def test_defaults_are_openais():
    p = params()
    assert (p.max_tokens, p.temperature, p.top_p, p.n, p.stream, p.logprobs, p.echo, p.stop) == (
        16,
        1.0,
        1.0,
        1,
        False,
        None,
        False,
        (),
    )
    assert parse_completion({"model": "m"}).prompts == ("",)  # no prompt: from <|endoftext|>
    assert params(max_tokens=None).max_tokens is None  # null: as many as fit


def test_field_conversions():
    assert params(top_p=0).top_k == 1  # OpenAI accepts 0: only the most probable token
    assert params(top_k=-1).top_k == 0  # vLLM's "off"
    assert params(seed=-1).seed == 2**64 - 1  # signed 64-bit seeds fold into [0, 2**64)
    assert params(stop="\n").stop == ("\n",)
    assert params(logit_bias={"50256": -100}).logit_bias == {50256: -100.0}
    assert params(best_of=2, n=2).n == 2
    assert params(stream=True, stream_options={"include_usage": True}).include_usage


def test_json_is_parsed_strictly():
    assert parse_json(b'{"a": 1.5}') == {"a": 1.5}
    for raw in (b'{"a": NaN}', b'{"a": -Infinity}', b'{"a": 1e400}', b"\xff", b"", b"[" * 100000):
        assert refused(parse_json, raw).status == 400


def test_prepare_checks_the_model_and_the_limits():
    settings = ServerSettings(max_prompt_tokens=10, max_tokens=8, max_choices=4)
    run = lambda p: prepare(p, "m", TOK, CONFIG, settings)  # noqa: E731
    assert refused(run, parse_completion({"model": "other", "prompt": "Hi"})).status == 404
    assert refused(run, params(prompt=[1] * 11)).param == "prompt"
    assert refused(run, params(max_tokens=9)).param == "max_tokens"
    assert run(params()).choices[0].config.max_new_tokens == 8  # OpenAI's default 16, lowered to the limit
    assert refused(run, params(n=5)).param == "n"
    assert refused(run, params(prompt=["a", "b", "c"], n=2)).param == "n"
    assert refused(run, params(prompt=[60000])).param == "prompt"
    assert refused(run, params(logit_bias={"50257": 1})).param == "logit_bias"
    within = prepare(params(prompt=[1] * 28, max_tokens=4), "m", TOK, CONFIG, ServerSettings())
    assert within.choices[0].config.max_new_tokens == 4
    error = refused(prepare, params(prompt=[1] * 28, max_tokens=5), "m", TOK, CONFIG, ServerSettings())
    assert error.code == "context_length_exceeded" and "32" in error.message
    fits = prepare(params(prompt=[1] * 28, max_tokens=None), "m", TOK, CONFIG, ServerSettings())
    assert fits.choices[0].config.max_new_tokens == 4


def test_prepare_makes_one_config_per_choice():
    p = prepare(params(prompt=["", "Hi"], n=2, seed=2**64 - 1, stop=["x"]), "m", TOK, CONFIG, ServerSettings())
    assert p.prompts == [[50256], TOK.encode("Hi")]  # an empty prompt starts from <|endoftext|>
    assert [c.config.seed for c in p.choices] == [2**64 - 1, 0, 1, 2]
    assert all(c.config.stop == ("x",) and c.config.stop_ids == (50256,) for c in p.choices)
    assert prepare(params(ignore_eos=True), "m", TOK, CONFIG, ServerSettings()).choices[0].config.stop_ids == ()
    assert prepare(params(prompt="a<|endoftext|>b"), "m", TOK, CONFIG, ServerSettings()).prompts[0][1] == 50256


def step(token):
    return Step(token, "", -1.0, ((token, -1.0),), None)


def test_tokens_go_out_with_the_text_they_start_in():
    track = LogprobTrack(TOK)
    hello, world = TOK.encode("Hello world")
    track.add(step(hello))
    assert track.release(0) == []  # its text is held back (a possible stop string)
    track.add(step(world))
    out = track.release(5)  # "Hello" went out
    assert [e.text for e in out] == ["Hello"] and out[0].top == {"Hello": -1.0}
    assert [(e.text, e.offset) for e in track.finish(11)] == [(" world", 5)]


def test_tokens_inside_a_cut_stop_string_are_dropped_and_offsets_follow_the_echo():
    track = LogprobTrack(TOK, base=3)  # after a 3-character echoed prompt
    for t in TOK.encode("Hi THE END now"):
        track.add(step(t))
    kept = track.finish(len("Hi"))  # the stop string " THE END" was cut
    assert [(e.text, e.offset) for e in kept] == [("Hi", 3)]


def test_a_character_split_across_tokens_goes_out_whole():
    track = LogprobTrack(TOK)
    ids = TOK.encode("🙂!")
    for t in ids:
        track.add(step(t))
    out = track.finish(2)
    assert len(out) == len(ids) and out[0].text.startswith("bytes:") and [e.offset for e in out][-1] == 1
