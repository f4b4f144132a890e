"""Chat templates (gpt2.chat_template): each renders exactly the string `transformers`'
`apply_chat_template` renders from the same template; where a template comes from; and every
conversation or template that cannot be used is a typed error, with Jinja2 imported only when a
template is rendered."""

import json
import subprocess
import sys

import pytest

from gpt2.chat_template import (
    BUILTIN_TEMPLATES,
    ChatMessageError,
    ChatTemplate,
    ChatTemplateError,
    builtin_template,
    load_template,
    model_template,
    normalize_messages,
    resolve_template,
)

pytest.importorskip("jinja2")

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hello there"},
    {"role": "assistant", "content": " Hi."},  # as a reply comes back: the model's leading space
    {"role": "user", "content": "What is 2 + 2?\nAnswer with a number."},
]
# A Hugging Face-style template with the features real ones use: loop variables, namespace,
# raise_exception, bos/eos tokens, trim_blocks/lstrip_blocks whitespace, {% generation %}.
ZEPHYR_LIKE = """{{ bos_token }}
{% set ns = namespace(turns=0) %}
{% for message in messages %}
    {% if message['role'] == 'user' %}
        {% set ns.turns = ns.turns + 1 %}
    {% endif %}
    {% if message['role'] == 'assistant' %}
<|assistant|>
{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}
    {% else %}
<|{{ message['role'] }}|>
{{ message['content'] }}{{ eos_token }}
    {% endif %}
    {% if loop.last and add_generation_prompt %}
<|assistant|>
    {% endif %}
{% endfor %}
{{ ns.turns | tojson }}"""
ALTERNATING = (
    "{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
)


@pytest.fixture(scope="module")
def hf_tokenizer(tmp_path_factory):
    """transformers' GPT-2 tokenizer built offline from the package's own vocabulary files."""
    transformers = pytest.importorskip("transformers")
    from gpt2.tokenizer import Tokenizer
    from gpt2.tokenizer.writers import write_hf_tokenizer

    directory = tmp_path_factory.mktemp("hf-tokenizer")
    write_hf_tokenizer(directory, Tokenizer.gpt2())
    return transformers.GPT2TokenizerFast(
        vocab_file=str(directory / "vocab.json"), merges_file=str(directory / "merges.txt")
    )


def transformers_render(hf_tokenizer, source, messages, add_generation_prompt=True):
    return hf_tokenizer.apply_chat_template(
        messages, chat_template=source, tokenize=False, add_generation_prompt=add_generation_prompt
    )


@pytest.mark.parametrize("name", sorted(BUILTIN_TEMPLATES))
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_builtin_templates_render_as_transformers_renders_them(hf_tokenizer, name, add_generation_prompt):
    template = builtin_template(name)
    ours = template.render(CONVERSATION, add_generation_prompt=add_generation_prompt)
    assert ours == transformers_render(hf_tokenizer, template.source, CONVERSATION, add_generation_prompt)


def test_plain_is_user_and_assistant_lines_stopping_at_the_next_user_turn():
    text = builtin_template("plain").render(CONVERSATION)
    assert text == (
        "You are terse.\nUser: Hello there\nAssistant: Hi.\nUser: What is 2 + 2?\nAnswer with a number.\nAssistant:"
    )
    assert builtin_template("plain").stops_for() == ("\nUser:",)
    assert builtin_template("chatml").stops_for() == ("<|im_end|>",)


def test_a_model_directorys_template_renders_as_transformers_renders_it(hf_tokenizer, tmp_path):
    source = ZEPHYR_LIKE
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"chat_template": source, "bos_token": "<|endoftext|>", "eos_token": {"content": "<|endoftext|>"}})
    )
    template = model_template(tmp_path)
    assert template is not None and template.origin == "model directory"
    for add in (True, False):
        assert template.render(CONVERSATION, add_generation_prompt=add) == transformers_render(
            hf_tokenizer, source, CONVERSATION, add
        )


def test_where_the_template_comes_from(tmp_path):
    assert resolve_template(None).describe() == "plain (default)"
    assert resolve_template(tmp_path).name == "plain"  # a directory without one
    (tmp_path / "chat_template.jinja").write_text("{{ messages[0]['content'] }}!")
    assert resolve_template(tmp_path).render([{"role": "user", "content": "hi"}]) == "hi!"
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}]})
    )
    assert resolve_template(tmp_path).source == "D"  # tokenizer_config.json before chat_template.jinja
    chosen = resolve_template(tmp_path, "chatml")  # given explicitly, --chat-template wins
    assert chosen.name == "chatml" and chosen.origin == "--chat-template"
    custom = tmp_path / "mine.jinja"
    custom.write_text("{% for m in messages %}{{ m.content }}{% endfor %}")
    assert resolve_template(None, str(custom)).render([{"role": "user", "content": "x"}]) == "x"


def test_a_models_eos_token_written_out_is_a_stop_string(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "x", "eos_token": "</s>"}))
    template = model_template(tmp_path)
    assert template is not None and template.stops_for() == ("</s>",)


def test_content_parts_of_text_are_joined():
    messages = normalize_messages(
        [{"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    )
    assert messages == [{"role": "system", "content": "a\nb"}]
    # fields a client echoes back from a response (null) are ignored; a name is kept
    assert normalize_messages([{"role": "assistant", "content": "x", "refusal": None, "tool_calls": None}]) == [
        {"role": "assistant", "content": "x"}
    ]


@pytest.mark.parametrize(
    "messages, param, words",
    [
        ([], "messages", "non-empty"),
        ("hello", "messages", "non-empty"),
        (["hello"], "messages[0]", "object"),
        ([{"role": "wizard", "content": "hi"}], "messages[0].role", "'wizard'"),
        ([{"role": "tool", "content": "hi"}], "messages[0].role", "the roles are"),
        ([{"content": "hi"}], "messages[0].role", "role null"),
        ([{"role": "user"}], "messages[0].content", "no content"),
        ([{"role": "user", "content": None}], "messages[0].content", "no content"),
        ([{"role": "user", "content": "  "}], "messages[0].content", "empty"),
        ([{"role": "user", "content": 7}], "messages[0].content", "string or a list"),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
            "messages[0].content[0]",
            "'image_url'",
        ),
        ([{"role": "user", "content": [{"type": "text"}]}], "messages[0].content[0]", "without a string"),
        ([{"role": "assistant", "content": "x", "tool_calls": [{}]}], "messages[0].tool_calls", "tool calls"),
    ],
)
def test_a_conversation_a_template_cannot_render_is_a_typed_error(messages, param, words):
    with pytest.raises(ChatMessageError) as caught:
        builtin_template("plain").render(messages)
    assert caught.value.param == param and words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_template_that_raises_is_a_typed_error():
    template = ChatTemplate("alternating", ALTERNATING)
    with pytest.raises(ChatTemplateError, match="roles must alternate"):
        template.render([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    with pytest.raises(ChatTemplateError, match="ZeroDivisionError"):
        ChatTemplate("broken", "{{ 1 // 0 }}").render([{"role": "user", "content": "a"}])


def test_the_template_runs_in_a_sandbox():
    escape = "{{ messages.__class__.__mro__ }}"
    with pytest.raises(ChatTemplateError):
        ChatTemplate("escape", escape).render([{"role": "user", "content": "a"}])
    with pytest.raises(ChatTemplateError):  # immutable: a template cannot change the messages
        ChatTemplate("mutate", "{{ messages.append(1) }}").render([{"role": "user", "content": "a"}])


def test_a_missing_or_invalid_template_file_is_a_typed_error(tmp_path):
    with pytest.raises(ChatTemplateError, match="no such file, and not a built-in template .plain, chatml"):
        load_template(str(tmp_path / "nope.jinja"))
    bad = tmp_path / "bad.jinja"
    bad.write_text("{% for m in messages %}")
    with pytest.raises(ChatTemplateError, match="not valid Jinja"):
        load_template(str(bad))
    (tmp_path / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(ChatTemplateError, match="not valid JSON"):
        model_template(tmp_path)


def test_without_jinja2_the_module_imports_and_rendering_names_the_extra(blocked_imports):
    code = blocked_imports(("jinja2",)) + (
        "from gpt2.chat_template import builtin_template, ChatTemplateError\n"
        "try:\n"
        "    builtin_template('plain').render([{'role': 'user', 'content': 'hi'}])\n"
        "except ChatTemplateError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == 'chat templates need Jinja2: pip install -e ".[serve]"'


def test_an_assistant_reply_may_be_empty_a_question_may_not():
    assert normalize_messages([{"role": "assistant", "content": ""}]) == [{"role": "assistant", "content": ""}]
    with pytest.raises(ChatMessageError, match="empty content"):
        normalize_messages([{"role": "system", "content": " \n"}])


def test_templates_render_from_many_threads_at_once():
    """The server renders in its thread pool: every thread's string equals the same render alone."""
    from concurrent.futures import ThreadPoolExecutor

    templates = [builtin_template("plain"), builtin_template("chatml"), ChatTemplate("custom", ALTERNATING)]
    jobs = [
        (
            templates[i % 3],
            [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}] * (i % 4 + 1),
        )
        for i in range(64)
    ]
    alone = [t.render(m) for t, m in jobs]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda job: job[0].render(job[1]), jobs * 4))
    assert together == alone * 4
