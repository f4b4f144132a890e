"""`gpt2 chat` through chat templates (gpt2.generation.conversation): the REPL builds exactly the
prompt `gpt2 serve`'s /v1/chat/completions builds for the same conversation, a kept KV cache gives
the replies a fresh run gives, and a conversation that outgrows the context says what it dropped."""

import io

import pytest

from gpt2.chat_template import builtin_template
from gpt2.cli import main
from gpt2.config import Config
from gpt2.engines import load_engine
from gpt2.errors import GenerationError
from gpt2.generation import GenerationConfig, Sampler, SamplingConfig, generate
from gpt2.generation.conversation import Conversation
from gpt2.params import init_params
from gpt2.tokenizer import Tokenizer

pytest.importorskip("jinja2")

TOK = Tokenizer.gpt2()
CONFIG = Config(n_layer=2, n_embd=16, n_head=2, n_ctx=64)
GREEDY = GenerationConfig(max_new_tokens=6, temperature=0, stop_ids=())


@pytest.fixture(scope="module")
def engine():
    return load_engine("pure", CONFIG, init_params(CONFIG, seed=1))


def fresh_greedy(engine, ids, n, stop=()):
    return list(generate(engine, ids, n, Sampler(SamplingConfig(temperature=0)), stop_ids=()))


@pytest.mark.parametrize("template_name", ["plain", "chatml"])
def test_the_repl_builds_the_servers_prompt_for_the_same_conversation(engine, template_name):
    from gpt2.server import ServerSettings
    from gpt2.server.chat import parse_chat, prepare_chat

    template = builtin_template(template_name)
    chat = Conversation(engine, GREEDY, TOK, template, system="Be kind.")
    for text in ["Hello", "How are you?", "Tell me more"]:
        steps = list(chat.turn(text))
        reply_ids = chat.session.reply_ids
        prompt_ids = chat.session.ids[: len(chat.session.ids) - len(reply_ids)]
        # what a client sends for the same conversation: every message so far but this reply
        body = {"model": "m", "messages": chat.messages[:-1], "max_tokens": GREEDY.max_new_tokens}
        prepared = prepare_chat(parse_chat(body), "m", template, TOK, CONFIG, ServerSettings())
        assert prompt_ids == prepared.prompts[0]
        assert prompt_ids == TOK.encode(template.render(chat.messages[:-1]), allowed_special="all")
        # and the reply is the one a fresh run over that prompt gives (a kept cache changes nothing)
        free = fresh_greedy(engine, prompt_ids, GREEDY.max_new_tokens)
        assert reply_ids == free[: len(reply_ids)]
        assert chat.messages[-1] == {"role": "assistant", "content": "".join(s.text for s in steps)}


def test_a_conversation_that_outgrows_the_context_drops_its_oldest_messages(engine):
    chat = Conversation(engine, GREEDY.replace(max_new_tokens=8), TOK, builtin_template("plain"), system="Sys.")
    seen = []
    for i in range(8):
        list(chat.turn(f"message number {i} with a few more words"))
        seen.append(list(chat.dropped))
        assert len(chat.prompt_ids()) <= CONFIG.n_ctx
        assert chat.messages[0] == {"role": "system", "content": "Sys."}  # the system message stays
        assert chat.messages[1]["role"] == "user"  # a reply goes with the message it answered
    dropped = [m for turn in seen for m in turn]
    assert dropped and dropped[0]["content"] == "message number 0 with a few more words"
    assert [m["role"] for m in dropped[:2]] == ["user", "assistant"]


def test_a_message_too_long_for_the_context_is_refused_and_changes_nothing(engine):
    chat = Conversation(engine, GREEDY, TOK, builtin_template("plain"))
    list(chat.turn("Hi"))
    before = list(chat.messages)
    with pytest.raises(GenerationError, match=r"more than the context of 64"):
        chat.turn("word " * 80)
    assert chat.messages == before and chat.dropped == []


# --- the command ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from gpt2.weights import save_model

    directory = tmp_path_factory.mktemp("chat-template-model")
    save_model(directory, CONFIG, init_params(CONFIG, seed=1))
    return str(directory)


def run_chat(capsys, monkeypatch, model_dir, lines, *argv):
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(line + "\n" for line in lines)))
    code = main(["chat", "-m", model_dir, "-e", "pure", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_chat_writes_the_template_and_text_shows_the_prompt(capsys, monkeypatch, model_dir, engine):
    code, out, err = run_chat(
        capsys, monkeypatch, model_dir, ["Hello", "/text"], "-n", "3", "-t", "0", "--system", "Be kind."
    )
    assert code == 0, err
    prompt = builtin_template("plain").render(
        [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hello"}]
    )
    reply = TOK.decode(fresh_greedy(engine, TOK.encode(prompt), 3))
    if "\nUser:" not in reply:
        assert out.startswith("Hello\n" + reply.lstrip() + "\n")
    assert "Be kind.\nUser: Hello\nAssistant:" in out  # /text: the conversation as the template writes it


def test_chat_says_what_it_dropped(capsys, monkeypatch, model_dir):
    lines = [f"message number {i} with a few more words" for i in range(8)]
    code, out, err = run_chat(capsys, monkeypatch, model_dir, lines, "-n", "8", "-t", "0")
    assert code == 0, err
    notes = [line for line in err.splitlines() if "outgrew the context" in line]
    assert notes and notes[0].startswith("[the conversation outgrew the context (64 tokens): dropped ")
    assert 'user "message number 0 with a f..."' in notes[0]


def test_chat_refuses_a_message_that_cannot_fit_and_goes_on(capsys, monkeypatch, model_dir):
    code, out, err = run_chat(capsys, monkeypatch, model_dir, ["word " * 80, "Hi"], "-n", "4", "-t", "0")
    assert code == 0 and "[not sent: this message makes a prompt of" in err
    assert len([line for line in err.splitlines() if line.startswith("[") and "tokens," in line]) == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--chat-template", "nope.jinja"], "--chat-template nope.jinja: no such file, and not a built-in template"),
        (["--raw", "--chat-template", "chatml"], "--chat-template writes a conversation; --raw has none"),
        (["--raw", "--system", "x"], "--system opens a conversation; --raw has none"),
    ],
)
def test_bad_template_options_are_one_line(capsys, monkeypatch, model_dir, argv, message):
    code, out, err = run_chat(capsys, monkeypatch, model_dir, ["Hi"], *argv)
    assert code == 2 and f"gpt2 chat: error: {message}" in err and "Traceback" not in err
