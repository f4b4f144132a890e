"""`gpt2 serve`'s OpenAI API through the stock `openai` client, on a live server (127.0.0.1, a
tiny random model with GPT-2's vocabulary): response shapes, streaming, n, logprobs and echo,
stop strings, seeds, penalties, and errors as the client's own exception classes."""

import json
import math

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
pytest.importorskip("numpy")

import serverkit  # noqa: E402
from gpt2.generation import GenerationConfig, stream  # noqa: E402
from gpt2.tokenizer import Tokenizer  # noqa: E402
from serverkit import NAME  # noqa: E402

TOK = Tokenizer.gpt2()


@pytest.fixture(scope="module")
def engine():
    return serverkit.engine()


@pytest.fixture(scope="module")
def url(engine):
    with serverkit.serving(model=engine) as url:
        yield url


@pytest.fixture(scope="module")
def client(url):
    return serverkit.client(url)


def library_text(engine, prompt, **kw):
    """What gpt2.generation.stream makes of the same request: the reference for the server."""
    kw.setdefault("max_new_tokens", 16)
    kw.setdefault("top_k", 0)  # the server's default (OpenAI has no top-k); the library's is 40
    ids = TOK.encode(prompt, allowed_special="all") or [50256]
    return "".join(step.text for step in stream(engine, ids, GenerationConfig(**kw), TOK))


def streamed(client, **request):
    """A streamed completion gathered per choice: ({index: text}, {index: finish}, {index: logprobs}, chunks)."""
    texts, finish, logprobs, chunks = {}, {}, {}, []
    for chunk in client.completions.create(stream=True, **request):
        chunks.append(chunk)
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + c.text
            if c.finish_reason is not None:
                assert c.index not in finish  # one finish per choice
                finish[c.index] = c.finish_reason
            if c.logprobs is not None:
                lp = logprobs.setdefault(c.index, {"tokens": [], "token_logprobs": [], "text_offset": []})
                for key in lp:
                    lp[key] += getattr(c.logprobs, key)
    return texts, finish, logprobs, chunks


# --- shapes -----------------------------------------------------------------------------------


def test_models_lists_the_served_model(client):
    models = client.models.list()
    assert [m.id for m in models.data] == [NAME] and models.data[0].object == "model"
    assert client.models.retrieve(NAME).id == NAME
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4")


def test_a_completion_has_exactly_openais_shape(url):
    status, _, body = serverkit.post(url, "/v1/completions", {"model": NAME, "prompt": "Hello", "max_tokens": 5})
    assert status == 200
    assert set(body) == {"id", "object", "created", "model", "choices", "usage"}
    assert body["object"] == "text_completion" and body["model"] == NAME and body["id"].startswith("cmpl-")
    assert isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert set(choice) == {"index", "text", "logprobs", "finish_reason"}
    assert choice["index"] == 0 and choice["logprobs"] is None and choice["finish_reason"] in ("stop", "length")
    assert set(body["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert (
        body["usage"]["prompt_tokens"] == 1 and body["usage"]["total_tokens"] == 1 + body["usage"]["completion_tokens"]
    )


def test_a_tiny_temperature_is_greedy(client):
    """1 / 1e-320 overflows: greedy by SamplingConfig.greedy, not the least likely tokens."""
    request = dict(model=NAME, prompt="Once upon a time", max_tokens=8, logprobs=1)
    greedy = client.completions.create(temperature=0, **request).choices[0]
    for tiny in (1e-320, 5e-324, 1e-9):
        got = client.completions.create(temperature=tiny, seed=5, **request).choices[0]
        assert got.text == greedy.text and got.logprobs.tokens == greedy.logprobs.tokens
        assert got.logprobs.token_logprobs == pytest.approx(greedy.logprobs.token_logprobs)


def test_greedy_text_is_what_the_library_generates(client, engine):
    for prompt in ("Once upon a time", "The meaning of life is", ""):
        got = client.completions.create(model=NAME, prompt=prompt, max_tokens=12, temperature=0)
        assert got.choices[0].text == library_text(engine, prompt, max_new_tokens=12, temperature=0)
        assert got.choices[0].finish_reason == "length" and got.usage.completion_tokens == 12


def test_a_prompt_prefilled_in_chunks_gives_the_same_text_and_scores(client, engine):
    """--prefill-chunk reaches the scheduler: a prompt of many chunks, greedy, echoed with logprobs,
    answers as the default server (one prefill) does."""
    from gpt2.server import ServerSettings

    prompt = "The quick brown fox jumps over the lazy dog, then it runs home to its den in the woods."
    request = dict(model=NAME, prompt=prompt, max_tokens=10, temperature=0, echo=True, logprobs=2)
    whole = client.completions.create(**request).choices[0]
    with serverkit.serving(ServerSettings(prefill_chunk=3), model=engine) as url:
        chunked = serverkit.client(url).completions.create(**request).choices[0]
    assert len(TOK.encode(prompt)) > 3 * 5
    assert chunked.text == whole.text == prompt + library_text(engine, prompt, max_new_tokens=10, temperature=0)
    assert chunked.logprobs.tokens == whole.logprobs.tokens
    assert chunked.logprobs.token_logprobs[1:] == pytest.approx(whole.logprobs.token_logprobs[1:], abs=1e-9)


def test_prompts_as_text_ids_and_lists(client):
    ids = TOK.encode("Hello world")
    forms = ["Hello world", ids, ["Hello world", "Hello world"], [ids, ids]]
    texts = []
    for prompt in forms:
        got = client.completions.create(model=NAME, prompt=prompt, max_tokens=6, temperature=0)
        texts += [c.text for c in got.choices]
        assert [c.index for c in got.choices] == list(range(len(got.choices)))
    assert len(texts) == 6 and len(set(texts)) == 1


# --- streaming ---------------------------------------------------------------------------------

REQUESTS = [
    {"prompt": "Once upon a time", "max_tokens": 20, "temperature": 0},
    {"prompt": "The", "max_tokens": 24, "temperature": 1.0, "top_p": 0.9, "seed": 3},
    {"prompt": "Hello", "max_tokens": 16, "temperature": 0.8, "seed": 11, "n": 3, "logprobs": 2},
    {"prompt": "A", "max_tokens": 12, "temperature": 0, "echo": True, "logprobs": 1},
    {"prompt": ["x", "y"], "max_tokens": 10, "temperature": 1.2, "extra_body": {"top_k": 50}, "seed": 0, "stop": ["e"]},
]


@pytest.mark.parametrize("request_", REQUESTS)
def test_streamed_text_equals_the_non_streamed_text(client, request_):
    whole = client.completions.create(model=NAME, **request_)
    texts, finish, logprobs, chunks = streamed(client, model=NAME, **request_)
    assert {c.index: c.text for c in whole.choices} == texts
    assert {c.index: c.finish_reason for c in whole.choices} == finish
    assert len({c.id for c in chunks}) == 1 and all(c.object == "text_completion" for c in chunks)
    if "logprobs" in request_:
        for c in whole.choices:
            assert c.logprobs.tokens == logprobs[c.index]["tokens"]
            assert c.logprobs.text_offset == logprobs[c.index]["text_offset"]
            assert c.logprobs.token_logprobs == logprobs[c.index]["token_logprobs"]


def test_stream_options_include_usage(client):
    chunks = list(
        client.completions.create(
            model=NAME, prompt="Hi", max_tokens=5, temperature=0, stream=True, stream_options={"include_usage": True}
        )
    )
    *text_chunks, last = chunks
    assert last.choices == [] and last.usage.completion_tokens == 5 and last.usage.prompt_tokens == 1
    assert all(c.usage is None for c in text_chunks)


def test_a_stream_ends_with_done(url):
    status, events = serverkit.sse_events(url, {"model": NAME, "prompt": "Hi", "max_tokens": 3, "stream": True})
    assert status == 200 and events[-1] == "[DONE]"
    assert [json.loads(e)["choices"][0]["finish_reason"] for e in events[:-1]][-1] in ("stop", "length")


# --- n, seeds, logprobs, echo ------------------------------------------------------------------


def test_n_choices_are_the_seeds_seed_plus_i(client):
    request = {"model": NAME, "prompt": "Hi", "max_tokens": 8, "temperature": 1.0, "extra_body": {"ignore_eos": True}}
    many = client.completions.create(n=3, seed=40, **request)
    assert [c.index for c in many.choices] == [0, 1, 2]
    for i, choice in enumerate(many.choices):
        assert client.completions.create(seed=40 + i, **request).choices[0].text == choice.text
    assert len({c.text for c in many.choices}) > 1
    assert many.usage.prompt_tokens == 1 and many.usage.completion_tokens == 3 * 8  # the prompt counts once


def test_the_same_seed_gives_the_same_text_and_another_seed_another(client, engine):
    request = {"model": NAME, "prompt": "Once", "max_tokens": 10, "temperature": 1.0}
    a = client.completions.create(seed=7, **request).choices[0].text
    b = client.completions.create(seed=7, **request).choices[0].text
    c = client.completions.create(seed=8, **request).choices[0].text
    assert a == b != c
    assert a == library_text(engine, "Once", max_new_tokens=10, temperature=1.0, seed=7)


def test_logprobs_name_each_token_and_its_alternatives(client):
    got = client.completions.create(model=NAME, prompt="Hi", max_tokens=6, temperature=0, logprobs=3)
    lp = got.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 6
    assert "".join(lp.tokens) == got.choices[0].text
    assert lp.text_offset[0] == 0
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert len(top) == 3 and logprob <= 0
        assert top[token] == pytest.approx(logprob)  # greedy: the chosen token is the most probable
        assert logprob == pytest.approx(max(top.values()))


def test_echo_with_logprobs_scores_the_prompt_so_a_client_gets_perplexity(client, engine):
    from gpt2.scoring import score

    text = "The quick brown fox jumps over the lazy dog."
    got = client.completions.create(model=NAME, prompt=text, max_tokens=0, echo=True, logprobs=0)
    choice = got.choices[0]
    assert choice.text == text and choice.finish_reason == "length"
    lp = choice.logprobs
    ids = TOK.encode(text)
    assert lp.tokens == [TOK.decode([i]) for i in ids]
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None  # the first token has no context
    assert lp.text_offset == [len(TOK.decode(ids[:i])) for i in range(len(ids))]
    reference = score(engine, ids)
    assert lp.token_logprobs[1:] == pytest.approx(reference.logprobs, abs=1e-9)
    perplexity = math.exp(-sum(lp.token_logprobs[1:]) / (len(ids) - 1))
    assert perplexity == pytest.approx(reference.perplexity, rel=1e-9)
    assert got.usage.completion_tokens == 0 and got.usage.prompt_tokens == len(ids)


def test_echo_without_logprobs_prepends_the_prompt(client, engine):
    got = client.completions.create(model=NAME, prompt="Once upon", max_tokens=5, temperature=0, echo=True)
    assert got.choices[0].text == "Once upon" + library_text(engine, "Once upon", max_new_tokens=5, temperature=0)


def test_a_token_that_is_half_a_character_is_shown_as_bytes(client):
    ids = TOK.encode("🙂")
    assert len(ids) > 1  # split across tokens
    got = client.completions.create(model=NAME, prompt=ids, max_tokens=0, echo=True, logprobs=0)
    assert got.choices[0].text == "🙂"
    assert got.choices[0].logprobs.tokens[0].startswith("bytes:\\x")


# --- stop strings, penalties, bias -------------------------------------------------------------


def test_a_stop_string_that_spans_two_tokens_cuts_the_text_where_it_starts(client):
    free = client.completions.create(model=NAME, prompt="Once upon a time", max_tokens=24, temperature=0, logprobs=0)
    tokens, text = free.choices[0].logprobs.tokens, free.choices[0].text
    offsets = free.choices[0].logprobs.text_offset
    for i in range(len(tokens) - 1):  # the last character of one token and the first of the next
        if not tokens[i] or not tokens[i + 1] or tokens[i].startswith("bytes:") or tokens[i + 1].startswith("bytes:"):
            continue
        stop = tokens[i][-1] + tokens[i + 1][0]
        at = offsets[i + 1] - 1
        if text.find(stop) == at:  # its first occurrence spans the boundary
            break
    else:
        pytest.fail(f"no stop string spanning two tokens found in {tokens}")
    for stream_it in (False, True):
        request = {"model": NAME, "prompt": "Once upon a time", "max_tokens": 24, "temperature": 0, "stop": stop}
        if stream_it:
            texts, finish, _, _ = streamed(client, **request)
            got_text, reason = texts[0], finish[0]
        else:
            got = client.completions.create(**request).choices[0]
            got_text, reason = got.text, got.finish_reason
        assert got_text == text[:at] and reason == "stop"


def test_logit_bias_forces_a_token(client):
    got = client.completions.create(model=NAME, prompt="Hi", max_tokens=4, logit_bias={"15496": 100}, seed=1)
    assert got.choices[0].text == "Hello" * 4


def test_penalties_reach_the_decoder(client, engine):
    kw = {"temperature": 0, "presence_penalty": 2.0, "frequency_penalty": 1.5}
    got = client.completions.create(model=NAME, prompt="Once upon", max_tokens=16, **kw)
    assert got.choices[0].text == library_text(engine, "Once upon", max_new_tokens=16, **kw)
    plain = client.completions.create(model=NAME, prompt="Once upon", max_tokens=16, temperature=0)
    assert got.choices[0].text != plain.choices[0].text  # greedy on a random model repeats; the penalty does not


def test_extensions_top_k_repetition_penalty_and_ignore_eos(client, engine):
    request = {"top_k": 5, "repetition_penalty": 1.3, "ignore_eos": True}
    got = client.completions.create(model=NAME, prompt="Hi", max_tokens=8, temperature=0.9, seed=2, extra_body=request)
    reference = library_text(
        engine, "Hi", max_new_tokens=8, temperature=0.9, seed=2, top_k=5, repetition_penalty=1.3, stop_ids=()
    )
    assert got.choices[0].text == reference


# --- errors as the client's own exceptions -----------------------------------------------------


@pytest.mark.parametrize(
    "request_, param",
    [
        ({"temperature": 3}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"n": 0}, "n"),
        ({"logprobs": 6}, "logprobs"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"presence_penalty": -3}, "presence_penalty"),
        ({"logit_bias": {"x": 1}}, "logit_bias"),
        ({"logit_bias": {"60000": 1}}, "logit_bias"),
        ({"suffix": "end"}, "suffix"),
        ({"best_of": 3}, "best_of"),
        ({"n": 17}, "n"),
        ({"prompt": [1, 2, 60000]}, "prompt"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
    ],
)
def test_a_bad_parameter_is_a_bad_request_error_naming_it(client, request_, param):
    request = {"model": NAME, "prompt": "Hi", **request_}
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(**request)
    assert info.value.status_code == 400
    assert info.value.body["param"] == param and info.value.body["type"] == "invalid_request_error"
    assert info.value.body["message"]


def test_an_unknown_argument_is_refused(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=NAME, prompt="Hi", extra_body={"temprature": 0.5})
    assert info.value.body["param"] == "temprature"


def test_a_prompt_beyond_the_context_window_is_context_length_exceeded(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=NAME, prompt=[1] * 120, max_tokens=16)
    assert info.value.body["code"] == "context_length_exceeded"
    assert "128" in info.value.body["message"]
    got = client.completions.create(model=NAME, prompt=[1] * 120, max_tokens=None, temperature=0)
    assert got.usage.completion_tokens <= 8  # null max_tokens: as many as fit the window


def test_another_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Hi")
    assert info.value.body["code"] == "model_not_found"


def test_the_api_key_guards_every_route_but_health(engine):
    from gpt2.server import ServerSettings

    with serverkit.serving(ServerSettings(api_key="s3cret"), model=engine) as url:
        with pytest.raises(openai.AuthenticationError) as info:
            serverkit.client(url, api_key="wrong").completions.create(model=NAME, prompt="Hi", max_tokens=1)
        assert info.value.body["code"] == "invalid_api_key"
        assert serverkit.client(url, api_key="s3cret").completions.create(model=NAME, prompt="Hi", max_tokens=1)
        assert serverkit.request(url, "GET", "/health")[0] == 200
        for path in ("/v1/models", "/metrics", "/nowhere"):
            status, headers, _ = serverkit.request(url, "GET", path)
            assert status == 401 and headers.get("www-authenticate") == "Bearer"
        assert serverkit.request(url, "GET", "/v1/models", headers={"X-Api-Key": "s3cret"})[0] == 200
        assert serverkit.request(url, "GET", "/v1/models", headers={"Authorization": "Bearer s3cret"})[0] == 200
        assert serverkit.request(url, "GET", "/v1/models", headers={"Authorization": "Bearer s3cre"})[0] == 401


def test_health_is_503_while_the_model_loads(engine):
    from gpt2.server import ModelHolder

    holder = ModelHolder(NAME)
    with serverkit.serving(holder=holder) as url:
        status, headers, body = serverkit.request(url, "GET", "/health")
        assert status == 503 and json.loads(body)["error"]["code"] == "model_loading" and "retry-after" in headers
        with pytest.raises(openai.InternalServerError) as info:
            serverkit.client(url).completions.create(model=NAME, prompt="Hi")
        assert info.value.status_code == 503
        holder.attach(engine, TOK)
        assert serverkit.request(url, "GET", "/health")[0] == 200
        assert serverkit.client(url).completions.create(model=NAME, prompt="Hi", max_tokens=2).usage.completion_tokens
        holder.fail("out of memory")
        holder.close()
        status, _, body = serverkit.request(url, "GET", "/health")
        assert status == 503 and "out of memory" in json.loads(body)["error"]["message"]


# --- the server's own routes -------------------------------------------------------------------


def test_tokenize_and_detokenize_round_trip(url):
    status, _, body = serverkit.post(url, "/tokenize", {"content": "Hello world"})
    assert status == 200 and body == {"tokens": [15496, 995], "count": 2, "max_model_len": 128}
    _, _, body = serverkit.post(url, "/tokenize", {"prompt": "Hello world", "with_pieces": True})
    assert body["tokens"] == [{"id": 15496, "piece": "Hello"}, {"id": 995, "piece": " world"}]
    status, _, body = serverkit.post(url, "/detokenize", {"tokens": [15496, 995]})
    assert status == 200 and body["content"] == body["prompt"] == "Hello world"
    status, _, body = serverkit.post(url, "/detokenize", {"tokens": [15496, 99999]})
    assert status == 400 and body["error"]["param"] == "tokens"


def test_metrics_count_requests_and_tokens(url, client):
    client.completions.create(model=NAME, prompt="Hi there", max_tokens=3, temperature=0)
    status, headers, body = serverkit.request(url, "GET", "/metrics")
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert int(samples['gpt2_requests_total{route="/v1/completions",status="200"}']) >= 1
    assert int(samples["gpt2_generation_tokens_total"]) >= 3 and int(samples["gpt2_prompt_tokens_total"]) >= 2
    assert samples["gpt2_model_ready"] == "1" and samples["gpt2_batch_capacity"] == "16"
    for gauge in ("gpt2_queue_depth", "gpt2_batch_size", "gpt2_tokens_per_second"):
        assert float(samples[gauge]) >= 0
    serverkit.request(url, "GET", "/made/up/path")
    _, _, body = serverkit.request(url, "GET", "/metrics")
    assert "/made/up/path" not in body.decode()  # unknown paths share one label


# --- the app, extended by another router (what gpt2 explore does) ------------------------------


def test_other_routers_and_a_static_page_share_the_app_the_key_and_the_engine(engine, tmp_path):
    from fastapi import APIRouter, Request

    from gpt2.server import ServerSettings
    from gpt2.server.errors import bad_request
    from gpt2.server.routes import holder_of, read_json

    router = APIRouter()

    @router.post("/api/next")
    async def next_token(request: Request):
        body = await read_json(request)
        if not isinstance(body.get("ids"), list):
            raise bad_request("ids must be a list", "ids")
        holder = holder_of(request)

        def top(e):
            return int(e.forward(body["ids"], e.new_cache()).argmax())

        return {"model": holder.name, "next": await holder.run_on_engine(top)}

    (tmp_path / "index.html").write_text("<h1>explorer</h1>")
    settings = ServerSettings(api_key="k", public_paths=("/health", "/", "/index.html"))
    key = {"X-Api-Key": "k"}
    with serverkit.serving(settings, model=engine, routers=[router], static=("/", tmp_path)) as url:
        status, _, page = serverkit.request(url, "GET", "/")
        assert status == 200 and b"explorer" in page
        assert serverkit.post(url, "/api/next", {"ids": [1, 2]})[0] == 401  # the key guards mounted routes too
        status, _, body = serverkit.post(url, "/api/next", {"ids": [1, 2]}, key)
        assert status == 200 and body["model"] == NAME
        assert body["next"] == int(engine.forward([1, 2], engine.new_cache()).argmax())
        status, _, body = serverkit.post(url, "/api/next", {"ids": "x"}, key)
        assert status == 400 and body["error"]["param"] == "ids"
        status, _, body = serverkit.request(url, "GET", "/no/such/file", headers=key)
        assert status == 404 and json.loads(body)["error"]["type"] == "invalid_request_error"
        client = serverkit.client(url, api_key="k")  # OpenAI's routes still answer beside them
        assert client.completions.create(model=NAME, prompt="Hi", max_tokens=2).choices[0].text
