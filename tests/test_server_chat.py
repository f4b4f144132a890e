"""`/v1/chat/completions` through the stock `openai` client on a live server (127.0.0.1, the tiny
random model of serverkit): the prompt is exactly the chat template's string (as `transformers`
renders it), streamed and whole answers agree, stops, usage, chat's logprobs shape, concurrent
chats share the batch, and every bad conversation is a 400 after which the server goes on."""

import json
import re
import threading

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("jinja2")
openai = pytest.importorskip("openai")
pytest.importorskip("numpy")

import serverkit  # noqa: E402
from gpt2.chat_template import builtin_template  # noqa: E402
from gpt2.generation import GenerationConfig, stream  # noqa: E402
from gpt2.tokenizer import Tokenizer  # noqa: E402
from serverkit import NAME  # noqa: E402

TOK = Tokenizer.gpt2()
CONVERSATION = [
    {"role": "system", "content": "You are a poet."},
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Good morrow."},
    {"role": "user", "content": "Sing of the sea"},
]


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


@pytest.fixture(scope="module")
def hf_tokenizer(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    from gpt2.tokenizer.writers import write_hf_tokenizer

    directory = tmp_path_factory.mktemp("hf-tokenizer")
    write_hf_tokenizer(directory, TOK)
    return transformers.GPT2TokenizerFast(
        vocab_file=str(directory / "vocab.json"), merges_file=str(directory / "merges.txt")
    )


def library_text(engine, prompt, stop=(), **kw):
    """What gpt2.generation.stream makes of a prompt with the server's defaults: the reference."""
    kw.setdefault("top_k", 0)
    config = GenerationConfig(stop=stop, **kw)
    return "".join(step.text for step in stream(engine, TOK.encode(prompt, allowed_special="all"), config, TOK))


def chat_stream(client, **request):
    """({index: text}, {index: finish}, chunks) of a streamed chat."""
    texts, finish, chunks = {}, {}, []
    for chunk in client.chat.completions.create(stream=True, **request):
        chunks.append(chunk)
        for c in chunk.choices:
            if c.delta.role is not None:
                assert c.index not in texts  # the role comes first, once per choice
                assert c.delta.role == "assistant"
                texts[c.index] = ""
            texts[c.index] += c.delta.content or ""
            if c.finish_reason is not None:
                assert c.index not in finish
                finish[c.index] = c.finish_reason
    return texts, finish, chunks


# --- the prompt -------------------------------------------------------------------------------


@pytest.mark.parametrize("template_name", ["plain", "chatml"])
def test_the_prompt_is_the_templates_string_as_transformers_renders_it(engine, hf_tokenizer, template_name):
    from gpt2.server import ServerSettings

    source = builtin_template(template_name).source
    expected = hf_tokenizer.apply_chat_template(
        CONVERSATION, chat_template=source, tokenize=False, add_generation_prompt=True
    )
    with serverkit.serving(ServerSettings(chat_template=template_name), model=engine) as url:
        client = serverkit.client(url)
        card = client.models.list().data[0]
        assert card.chat_template["name"] == template_name and card.chat_template["from"] == "--chat-template"
        reply = client.chat.completions.create(model=NAME, messages=CONVERSATION, max_tokens=12, temperature=0)
    assert reply.usage.prompt_tokens == len(TOK.encode(expected, allowed_special="all"))
    # the reply is what the library writes after exactly that prompt (greedy, the template's stops)
    stops = builtin_template(template_name).stops_for()
    assert reply.choices[0].message.content == library_text(
        engine, expected, stop=stops, max_new_tokens=12, temperature=0
    )


def test_a_model_directorys_template_is_used_and_reported(tmp_path):
    from gpt2.server import ModelHolder

    directory = tmp_path / "tuned"
    serverkit.save_model(directory)
    template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"chat_template": template, "eos_token": "<|endoftext|>"})
    )
    holder = ModelHolder("tuned")
    holder.load(str(directory), "numpy")
    with serverkit.serving(holder=holder) as url:
        client = serverkit.client(url)
        card = client.models.retrieve("tuned")
        assert card.chat_template["from"] == "model directory" and card.chat_template["name"].endswith(
            "tokenizer_config.json"
        )
        reply = client.chat.completions.create(model="tuned", messages=CONVERSATION[1:2], max_tokens=2)
    assert reply.usage.prompt_tokens == len(TOK.encode("<user>Hello<assistant>"))


def test_the_default_template_adds_its_stop_to_the_requests():
    from gpt2.config import Config
    from gpt2.server import ServerSettings
    from gpt2.server.chat import parse_chat, prepare_chat

    chat = parse_chat({"model": "m", "messages": CONVERSATION, "stop": ["\n\n"], "max_tokens": 4})
    prepared = prepare_chat(
        chat, "m", builtin_template("plain"), TOK, Config(n_layer=1, n_embd=8, n_head=2), ServerSettings()
    )
    assert prepared.choices[0].config.stop == ("\n\n", "\nUser:")
    assert TOK.decode(prepared.prompts[0]).endswith("User: Sing of the sea\nAssistant:")


# --- answers ----------------------------------------------------------------------------------


def test_a_chat_completion_has_openais_shape(url):
    status, _, body = serverkit.post(
        url, "/v1/chat/completions", {"model": NAME, "messages": CONVERSATION, "max_completion_tokens": 5}
    )
    assert status == 200
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-") and body["model"] == NAME
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length") and choice["logprobs"] is None
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_streamed_and_whole_answers_are_the_same(client):
    request = dict(model=NAME, messages=CONVERSATION, max_tokens=16, n=3, seed=11, temperature=1.0)
    whole = client.chat.completions.create(**request)
    texts, finish, chunks = chat_stream(client, stream_options={"include_usage": True}, **request)
    assert texts == {c.index: c.message.content for c in whole.choices}
    assert finish == {c.index: c.finish_reason for c in whole.choices}
    assert all(ch.object == "chat.completion.chunk" and ch.id == chunks[0].id for ch in chunks)
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage  # include_usage: the last chunk
    assert all(ch.usage is None for ch in chunks[:-1])


def test_usage_counts_the_rendered_prompt_and_the_reply(client):
    reply = client.chat.completions.create(
        model=NAME, messages=CONVERSATION, max_tokens=7, temperature=0, extra_body={"ignore_eos": True}
    )
    prompt = builtin_template("plain").render(CONVERSATION)
    assert reply.usage.prompt_tokens == len(TOK.encode(prompt))
    if reply.choices[0].finish_reason == "length":
        assert reply.usage.completion_tokens == 7
    else:  # the template's stop string came first
        assert reply.usage.completion_tokens <= 7


def test_a_stop_string_ends_the_reply_with_finish_reason_stop(client, engine):
    request = dict(model=NAME, messages=CONVERSATION, temperature=0, extra_body={"ignore_eos": True})
    free = client.chat.completions.create(max_tokens=24, **request).choices[0]
    text = free.message.content
    words = re.findall(r"\w{2,}", text[3:])
    if not words:
        pytest.skip("the random model wrote no word to stop at")
    cut = text.index(words[0], 3)
    stopped = client.chat.completions.create(max_tokens=24, stop=[words[0]], **request).choices[0]
    assert stopped.message.content == text[:cut] and stopped.finish_reason == "stop"
    short = client.chat.completions.create(max_tokens=1, **request).choices[0]
    assert short.finish_reason == "length"


def test_logprobs_have_chats_shape(client):
    request = dict(model=NAME, messages=CONVERSATION, max_tokens=8, temperature=0, logprobs=True, top_logprobs=3)
    reply = client.chat.completions.create(**request).choices[0]
    content = reply.logprobs.content
    assert content and b"".join(bytes(e.bytes) for e in content) == reply.message.content.encode()
    for e in content:
        assert isinstance(e.token, str) and e.logprob <= 0 and len(e.top_logprobs) == 3
        assert all(isinstance(t.token, str) and t.logprob <= 0 and t.bytes for t in e.top_logprobs)
        assert max(t.logprob for t in e.top_logprobs) == pytest.approx(e.logprob)  # greedy: the best one
    streamed = []
    for chunk in client.chat.completions.create(stream=True, **request):
        for c in chunk.choices:
            streamed += c.logprobs.content if c.logprobs is not None else []
    assert [(e.token, e.logprob) for e in streamed] == [(e.token, e.logprob) for e in content]
    plain = client.chat.completions.create(model=NAME, messages=CONVERSATION, max_tokens=2, logprobs=True)
    assert all(e.top_logprobs == [] for e in plain.choices[0].logprobs.content)


def test_eight_concurrent_chat_streams_share_the_batch(engine):
    from gpt2.server import ServerSettings

    settings = ServerSettings(max_batch=8)
    with serverkit.serving(settings, model=serverkit.SlowEngine(engine, 0.005)) as url:
        client = serverkit.client(url)
        start = threading.Barrier(8, timeout=serverkit.TIMEOUT)
        results: dict[int, str] = {}
        errors: list[BaseException] = []

        def talk(i):
            try:
                start.wait()
                messages = [{"role": "user", "content": f"Tell me story number {i}"}]
                texts, finish, _ = chat_stream(
                    client, model=NAME, messages=messages, max_tokens=24, seed=i, extra_body={"ignore_eos": True}
                )
                whole = client.chat.completions.create(
                    model=NAME, messages=messages, max_tokens=24, seed=i, extra_body={"ignore_eos": True}
                )
                assert texts[0] == whole.choices[0].message.content and finish[0] == whole.choices[0].finish_reason
                results[i] = texts[0]
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=talk, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(serverkit.TIMEOUT)
        assert not errors and len(results) == 8
        _, _, metrics = serverkit.request(url, "GET", "/metrics")
    samples = dict(re.findall(r"^(gpt2_step_rows_total|gpt2_steps_total) (\d+)", metrics.decode(), re.M))
    assert int(samples["gpt2_step_rows_total"]) > int(samples["gpt2_steps_total"])  # mean batch > 1


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, param, words",
    [
        ({"messages": [{"role": "wizard", "content": "Hi"}]}, "messages[0].role", "role 'wizard'"),
        ({"messages": [{"role": "tool", "content": "Hi", "tool_call_id": "x"}]}, "messages[0].role", "the roles are"),
        ({"messages": []}, "messages", "non-empty"),
        ({"messages": None}, "messages", "non-empty"),
        ({"messages": [{"role": "user"}]}, "messages[0].content", "no content"),
        ({"messages": [{"role": "user", "content": ""}]}, "messages[0].content", "empty content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]},
            "messages[0].content[0]",
            "text only",
        ),
        ({"messages": [{"role": "user", "content": "Hi " * 200}]}, "messages", "too many"),
        ({"max_tokens": 127}, "messages", "too many"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", "not supported"),
        ({"top_logprobs": 2}, "top_logprobs", "needs logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs", "[0, 20]"),
        ({"logprobs": 3}, "logprobs", "true or false"),
        ({"max_tokens": 3, "max_completion_tokens": 4}, "max_completion_tokens", "differ"),
        ({"echo": True}, "echo", "Unrecognized"),
        ({"temperature": 3}, "temperature", "[0, 2]"),
    ],
)
def test_a_bad_chat_is_a_400_and_the_server_goes_on(client, change, param, words):
    request = {"model": NAME, "messages": [{"role": "user", "content": "Hi"}]}
    known = {k: v for k, v in change.items() if k != "echo"}  # the client refuses echo itself
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            **{**request, **known}, extra_body={k: change[k] for k in change.keys() - known.keys()}
        )
    error = caught.value.body
    assert error["param"] == param and words in error["message"], error
    ok = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    assert ok.choices[0].finish_reason in ("stop", "length")


def test_a_conversation_past_the_context_says_by_how_much(client):
    text = "Hi " * 200  # 200 tokens; the context is 128
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": text}])
    prompt = len(TOK.encode(builtin_template("plain").render([{"role": "user", "content": text}])))
    assert caught.value.body["code"] == "context_length_exceeded"
    assert f"the conversation is {prompt} tokens" in caught.value.body["message"]
    assert f"that is {prompt + 1 - 128} tokens too many" in caught.value.body["message"]


def test_the_servers_prompt_limit_names_the_messages(engine):
    from gpt2.server import ServerSettings

    with serverkit.serving(ServerSettings(max_prompt_tokens=8), model=engine) as url:
        with pytest.raises(openai.BadRequestError) as caught:
            serverkit.client(url).chat.completions.create(model=NAME, messages=CONVERSATION)
    assert caught.value.body["param"] == "messages" and "accepts at most 8" in caught.value.body["message"]


def test_a_template_that_raises_is_a_400(engine, tmp_path):
    from gpt2.server import ServerSettings

    path = tmp_path / "no-system.jinja"
    path.write_text(
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system messages here') }}"
        "{% endif %}{{ m['content'] }}\n{% endfor %}"
    )
    with serverkit.serving(ServerSettings(chat_template=str(path)), model=engine) as url:
        client = serverkit.client(url)
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model=NAME, messages=CONVERSATION)
        assert caught.value.body["code"] == "chat_template_error"
        assert "no system messages here" in caught.value.body["message"]
        ok = client.chat.completions.create(model=NAME, messages=CONVERSATION[1:], max_tokens=2)
        assert ok.usage.prompt_tokens == len(TOK.encode("Hello\nGood morrow.\nSing of the sea\n"))


def test_another_model_name_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.body["code"] == "model_not_found" and NAME in caught.value.body["message"]


def test_the_readmes_client_snippet_runs_verbatim_against_the_packaged_model():
    """README.md's client snippet, as printed (only the port is this test server's), against a
    server of the model that ships offline."""
    from pathlib import Path

    from gpt2.server import ModelHolder

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "from openai import OpenAI" in b]
    assert len(blocks) == 1
    snippet = blocks[0]
    assert "http://127.0.0.1:8080/v1" in snippet
    holder = ModelHolder("gpt2-shakespeare")
    holder.load("gpt2-shakespeare", "numpy")
    with serverkit.serving(holder=holder) as url:
        printed = []
        scope = {"print": lambda *args, **kw: printed.append(args)}
        exec(compile(snippet.replace("http://127.0.0.1:8080", url), "README.md", "exec"), scope)
    assert scope["model"] == "gpt2-shakespeare" and scope["reply"].choices[0].finish_reason in ("stop", "length")
    assert printed == [(scope["reply"].choices[0].message.content,)] and printed[0][0].strip()
