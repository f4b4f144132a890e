"""Chat templates: how a conversation (system, user and assistant messages) becomes one prompt.

GPT-2 continues text; a chat template writes a conversation as the text to
continue. Templates are Jinja, as Hugging Face stores them, rendered the way
`transformers`' `apply_chat_template` renders them: Jinja2's sandboxed
environment (a template from a model directory is code someone else wrote),
`trim_blocks` and `lstrip_blocks`, and the variables `messages`,
`add_generation_prompt`, `bos_token`, `eos_token` and `raise_exception(msg)`.

Which template a model uses (`resolve_template`), first match wins:

1. `--chat-template NAME|FILE` when given: a built-in name (`plain`, `chatml`)
   or a Jinja file. Given explicitly, it overrides the model's own template,
   as vLLM's and llama.cpp's option of the same name does.
2. The model directory's own: `chat_template` in its `tokenizer_config.json`
   (a string, or Hugging Face's list of named templates: the one named
   "default"), else a `chat_template.jinja` file beside it.
3. `plain`, for a base GPT-2 that was never taught a format: each turn on its
   own line as `User: ...` / `Assistant: ...` (a system message is its first
   line, as written), ending with `Assistant:` for the model to continue, and
   stopping at the next "\\nUser:".

A template's stop strings end the reply where the format says the turn is
over: `plain` stops at "\\nUser:", `chatml` at "<|im_end|>"; any template also
stops at its `eos_token` when that is not the tokenizer's own end-of-text id.

This module imports with the standard library alone; Jinja2 (the `serve`
extra) is imported when a template is first compiled.

>>> template = builtin_template("plain")
>>> print(template.render([{"role": "system", "content": "Be brief."},
...                        {"role": "user", "content": "Hi"}]))
Be brief.
User: Hi
Assistant:
>>> template.stop
('\\nUser:',)
>>> try:
...     normalize_messages([{"role": "wizard", "content": "Hi"}])
... except ChatMessageError as err:
...     print(err.param, "-", err)
messages[0].role - messages[0] has role 'wizard'; the roles are system, user and assistant
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import Gpt2Error, install_hint

__all__ = [
    "BUILTIN_TEMPLATES",
    "DEFAULT_TEMPLATE",
    "ROLES",
    "ChatTemplate",
    "ChatTemplateError",
    "ChatMessageError",
    "builtin_template",
    "load_template",
    "model_directory",
    "model_template",
    "normalize_messages",
    "resolve_template",
]

ROLES = ("system", "user", "assistant")
ROLE_ALIASES = {"developer": "system"}  # OpenAI's newer name for the system message
ENDOFTEXT = "<|endoftext|>"
MAX_TEMPLATE_BYTES = 1 << 20  # a template file larger than this is not a template

# `trim` on the content: a reply sent back as the next turn's assistant message starts with the
# space the model wrote after "Assistant:"; trimmed, the conversation renders the same either way.
PLAIN = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] | trim }}\n"
    "{% elif message['role'] == 'user' %}User: {{ message['content'] | trim }}\n"
    "{% elif message['role'] == 'assistant' %}Assistant: {{ message['content'] | trim }}\n"
    "{% else %}{{ raise_exception('unknown role ' + message['role']) }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
BUILTIN_TEMPLATES: dict[str, tuple[str, tuple[str, ...]]] = {  # name -> (Jinja source, stop strings)
    "plain": (PLAIN, ("\nUser:",)),
    "chatml": (CHATML, ("<|im_end|>",)),
}
DEFAULT_TEMPLATE = "plain"


class ChatTemplateError(Gpt2Error, ValueError):
    """A template that cannot be used: no such name or file, not Jinja, or it raised while rendering."""


class ChatMessageError(Gpt2Error, ValueError):
    """A conversation a template cannot render: an unknown role, missing or non-text content.
    `param` names the field at fault, as OpenAI's errors do (`messages[2].content`)."""

    def __init__(self, message: str, param: str = "messages") -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class ChatTemplate:
    """A Jinja chat template, where it came from, and the stop strings that end a reply."""

    name: str  # "plain", "chatml", a file's path, or "<directory>/tokenizer_config.json"
    source: str
    stop: tuple[str, ...] = ()
    bos_token: str = ENDOFTEXT
    eos_token: str = ENDOFTEXT
    origin: str = "built-in"  # how it was chosen: "built-in", "--chat-template", "model directory", "default"
    extra: Mapping[str, str] = field(default_factory=dict)  # other special tokens (unk_token, pad_token)

    def describe(self) -> str:
        """One line for logs and /v1/models: 'plain (default)'."""
        return f"{self.name} ({self.origin})"

    def render(self, messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool = True) -> str:
        """The prompt for `messages` (checked by `normalize_messages` first). A template that
        raises (through `raise_exception`, or by failing) is a ChatTemplateError."""
        checked = normalize_messages(messages)
        compiled = _compile(self.source)
        jinja2 = _jinja()
        try:
            return str(
                compiled.render(
                    messages=checked,
                    add_generation_prompt=add_generation_prompt,
                    bos_token=self.bos_token,
                    eos_token=self.eos_token,
                    **self.extra,
                )
            )
        except jinja2.TemplateError as exc:
            raise ChatTemplateError(f"the chat template {self.name} refused the conversation: {exc}") from None
        except Exception as exc:  # a template is code: anything it raises is its error, not ours
            raise ChatTemplateError(f"the chat template {self.name} failed: {type(exc).__name__}: {exc}") from None

    def stops_for(self, eot_special: bool = True) -> tuple[str, ...]:
        """The stop strings: the template's own, plus its eos_token written out when the
        tokenizer does not know it as its end-of-text token (`eot_special` False or another name)."""
        extra = (self.eos_token,) if self.eos_token and (self.eos_token != ENDOFTEXT or not eot_special) else ()
        return tuple(dict.fromkeys((*self.stop, *extra)))

    def check(self) -> ChatTemplate:
        """Compile it now (a syntax error is said at startup, not at the first request)."""
        _compile(self.source)
        return self


# --- messages ------------------------------------------------------------------------------------


def normalize_messages(messages: Any) -> list[dict[str, str]]:
    """OpenAI's messages as the template sees them: [{"role", "content"}] with text content.

    A role is system, user or assistant ("developer" is read as system); content is a string
    (empty or blank only for an assistant's reply), or OpenAI's list of content parts of which
    only {"type": "text"} parts are accepted (joined with newlines). `name` is kept; other
    fields must be null. Anything else is a ChatMessageError.

    >>> normalize_messages([{"role": "user", "content": [{"type": "text", "text": "a"},
    ...                                                   {"type": "text", "text": "b"}]}])
    [{'role': 'user', 'content': 'a\\nb'}]
    """
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ChatMessageError("messages must be a non-empty list of {role, content} objects")
    out = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise ChatMessageError(f"{where} must be an object with a role and content", where)
        role = message.get("role")
        if not isinstance(role, str) or ROLE_ALIASES.get(role, role) not in ROLES:
            raise ChatMessageError(
                f"{where} has role {_show(role)}; the roles are {', '.join(ROLES[:-1])} and {ROLES[-1]}",
                f"{where}.role",
            )
        for key, value in message.items():
            if key not in ("role", "content", "name") and value is not None:
                what = "tool calls" if key in ("tool_calls", "function_call") else f"the field {key!r}"
                raise ChatMessageError(f"{where} has {what}, which this server does not support", f"{where}.{key}")
        name = message.get("name")
        if name is not None and not isinstance(name, str):
            raise ChatMessageError(f"{where}.name must be a string", f"{where}.name")
        role = ROLE_ALIASES.get(role, role)
        entry = {"role": role, "content": _content(message.get("content"), where, empty_ok=role == "assistant")}
        if name is not None:
            entry["name"] = name
        out.append(entry)
    return out


def _content(content: Any, where: str, *, empty_ok: bool = False) -> str:
    param = f"{where}.content"
    if content is None:
        raise ChatMessageError(f"{where} has no content", param)
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind == "text" and not isinstance(part.get("text"), str):
                raise ChatMessageError(f"{param}[{j}] is a text part without a string 'text'", f"{param}[{j}]")
            if kind != "text":
                raise ChatMessageError(
                    f"{param}[{j}] is {_show(kind) if kind else 'not a text part'}: "
                    'GPT-2 reads text only ({"type": "text", "text": "..."})',
                    f"{param}[{j}]",
                )
            texts.append(part["text"])
        text = "\n".join(texts)
    else:
        raise ChatMessageError(f"{param} must be a string or a list of text parts", param)
    if not text.strip() and not empty_ok:  # a reply may be empty (the model stopped at once), a question not
        raise ChatMessageError(f"{where} has empty content", param)
    return text


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- finding a template --------------------------------------------------------------------------


def builtin_template(name: str, origin: str = "built-in") -> ChatTemplate:
    """A named built-in template (`plain`, `chatml`)."""
    if name not in BUILTIN_TEMPLATES:
        raise ChatTemplateError(
            f"no chat template named {name!r}; the built-in ones are {', '.join(BUILTIN_TEMPLATES)}"
        )
    source, stop = BUILTIN_TEMPLATES[name]
    return ChatTemplate(name, source, stop, origin=origin)


def load_template(choice: str) -> ChatTemplate:
    """`--chat-template`'s value: a built-in name, or a Jinja file (a path, or anything with a '/' or
    a '.' in it; a missing one is an error naming the built-ins)."""
    if choice in BUILTIN_TEMPLATES:
        return builtin_template(choice, "--chat-template")
    path = Path(choice).expanduser()
    if not path.is_file():
        raise ChatTemplateError(
            f"--chat-template {choice}: no such file, and not a built-in template ({', '.join(BUILTIN_TEMPLATES)})"
        )
    return ChatTemplate(str(path), _read_text(path), origin="--chat-template").check()


def model_template(directory: str | Path | None) -> ChatTemplate | None:
    """The template a model directory carries (tokenizer_config.json's `chat_template`, else
    chat_template.jinja), with its bos/eos tokens (and a built-in's stop strings when it is one,
    as `gpt2 train` writes them); None when it has none."""
    if directory is None:
        return None
    directory = Path(directory)
    if not directory.is_dir():
        directory = directory.parent
    config_path = directory / "tokenizer_config.json"
    config: dict[str, Any] = {}
    if config_path.is_file():
        try:
            loaded = json.loads(_read_text(config_path))
        except ValueError as exc:
            raise ChatTemplateError(f"{config_path} is not valid JSON: {exc}") from None
        config = loaded if isinstance(loaded, dict) else {}
    tokens = {k: _token(config.get(k)) for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    special = {k: v for k, v in tokens.items() if v is not None}
    bos, eos = special.pop("bos_token", ENDOFTEXT), special.pop("eos_token", ENDOFTEXT)
    source = _named_source(config.get("chat_template"), config_path)
    name = str(config_path)
    if source is None and (directory / "chat_template.jinja").is_file():
        name = str(directory / "chat_template.jinja")
        source = _read_text(directory / "chat_template.jinja")
    if source is None:
        return None
    # a built-in template written by instruction tuning (`gpt2 train`) keeps its stop strings
    stop = next((stops for text, stops in BUILTIN_TEMPLATES.values() if text == source), ())
    return ChatTemplate(
        name, source, stop, bos_token=bos, eos_token=eos, origin="model directory", extra=special
    ).check()


def model_directory(model: str) -> Path | None:
    """Where a model's own files are (its chat template among them): a directory, a weights file's
    directory, or a packaged model's; None for a hub name (OpenAI's GPT-2 has no chat template).

    >>> model_directory("gpt2-shakespeare").name, model_directory("gpt2")
    ('gpt2-shakespeare', None)
    """
    from .packaged import packaged_model

    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.is_file():
        return path.parent
    return packaged_model(model)


def resolve_template(directory: str | Path | None = None, choice: str | None = None) -> ChatTemplate:
    """The template in force (see the module docstring): `choice` (--chat-template), else the
    model directory's, else `plain`."""
    if choice:
        return load_template(choice)
    return model_template(directory) or builtin_template(DEFAULT_TEMPLATE, "default")


def _named_source(value: Any, where: Path) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # [{"name": "default", "template": "..."}, {"name": "tool_use", ...}]
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        if isinstance(named.get("default"), str):
            return str(named["default"])
    raise ChatTemplateError(f"{where}: chat_template must be a string or a list with a template named 'default'")


def _token(value: Any) -> str | None:
    if isinstance(value, dict):  # {"content": "<|endoftext|>", "lstrip": false, ...}
        value = value.get("content")
    return value if isinstance(value, str) else None


def _read_text(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TEMPLATE_BYTES + 1)
    except OSError as exc:
        raise ChatTemplateError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_TEMPLATE_BYTES:
        raise ChatTemplateError(f"{path} is larger than {MAX_TEMPLATE_BYTES} bytes: not a chat template")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ChatTemplateError(f"{path} is not UTF-8 text") from None


# --- Jinja ---------------------------------------------------------------------------------------


def _jinja() -> Any:
    try:
        import jinja2
    except ImportError:
        raise ChatTemplateError(f"chat templates need Jinja2: {install_hint('serve')}") from None
    return jinja2


@lru_cache(maxsize=16)
def _compile(source: str) -> Any:
    """The template compiled in a sandbox configured as transformers configures it."""
    jinja2 = _jinja()
    from datetime import datetime

    from jinja2 import nodes
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationBlock(Extension):
        """`{% generation %}...{% endgeneration %}` (transformers marks assistant text so): rendered as is."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller: Any) -> Any:
            return caller()

    def raise_exception(message: Any) -> None:
        raise jinja2.TemplateError(message)

    def tojson(
        value: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys: bool = False
    ) -> str:
        # Jinja's own tojson escapes HTML characters, which a prompt must not have
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format: str) -> str:
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    try:
        return env.from_string(source)
    except jinja2.TemplateError as exc:
        line = getattr(exc, "lineno", None)
        raise ChatTemplateError(
            f"the chat template is not valid Jinja{f' (line {line})' if line else ''}: {exc}"
        ) from None
