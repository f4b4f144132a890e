"""Structured fuzzing of what a user hands the loaders: safetensors headers and config.json.

Unlike random bytes (tests/test_weights_safetensors.py's header fuzz), these build
headers and configs that are almost right: the real keys, with each value drawn from
plausible values, wrong types, huge and negative numbers, nesting and strings, so that
every check of the readers is reached. Whatever the input, loading gives a model or a
typed project error (`Gpt2Error`): never a TypeError, a RecursionError, an OverflowError,
a MemoryError or a traceback of any other kind."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpt2.config import Config
from gpt2.errors import Gpt2Error
from gpt2.params import init_params
from gpt2.weights import load_model, write_safetensors
from gpt2.weights.safetensors import KNOWN_DTYPES, read_safetensors

SMALL = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=16, n_ctx=4)
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Any JSON value, small: the wrong-type alternative for every field.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids, max_size=3),
    max_leaves=6,
)
# Integers as a hostile file would write them: tiny, plausible, huge, 4000 digits.
counts = st.one_of(
    st.integers(0, 64), st.integers(-5, 10**6), st.sampled_from([2**31, 2**63, 2**64 + 1, 10**4000, 10**18])
)


def loads_or_typed_error(load, *args) -> None:
    try:
        load(*args)
    except Gpt2Error:
        pass


# --- safetensors headers -----------------------------------------------------------------------

dtypes = st.one_of(st.sampled_from(sorted(KNOWN_DTYPES)), st.sampled_from(["f32", "F31", ""]), json_values)
shapes = st.one_of(st.lists(counts, max_size=4), st.lists(json_values, max_size=3), json_values)
offsets = st.one_of(st.tuples(counts, counts).map(list), st.lists(counts, max_size=3), json_values)
names = st.one_of(
    st.sampled_from(["wte.weight", "wpe.weight", "h.0.ln_1.weight", "lm_head.weight", "h.99999.x", "__metadata__"]),
    st.text(max_size=8),
)
entries = st.fixed_dictionaries({"dtype": dtypes, "shape": shapes, "data_offsets": offsets}) | st.dictionaries(
    st.sampled_from(["dtype", "shape", "data_offsets", "extra"]), json_values, max_size=4
)
headers = st.dictionaries(names, entries | json_values, max_size=4)


@FUZZ
@given(header=headers, data_size=st.integers(0, 64), padding=st.sampled_from([b"", b" " * 7, b"\n"]))
def test_safetensors_header_fuzz(tmp_path_factory, header, data_size, padding):
    raw = json.dumps(header).encode() + padding
    path = tmp_path_factory.mktemp("st") / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(data_size))
    loads_or_typed_error(read_safetensors, path)
    loads_or_typed_error(load_model, path)  # names, inferred config, validation


@FUZZ
@given(
    depth=st.integers(1, 3000),
    opener=st.sampled_from(["[", '{"a":']),
    digits=st.integers(1, 6000),
    where=st.sampled_from(["shape", "data_offsets"]),
)
def test_safetensors_headers_that_strain_the_parser(tmp_path_factory, depth, opener, digits, where):
    closer = "]" if opener == "[" else "}"
    nested = json.dumps({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})
    nested = nested.replace("[1]", opener * depth + "1" + closer * depth)
    big = json.dumps({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})
    big = big.replace("[1]" if where == "shape" else "[0, 4]", "[" + "9" * digits + "]")
    for raw in (nested.encode(), big.encode()):
        path = tmp_path_factory.mktemp("st") / "x.safetensors"
        path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(4))
        loads_or_typed_error(read_safetensors, path)


# --- config.json -------------------------------------------------------------------------------


def plausible(value):
    """The right value most of the time, so that later checks are reached too."""
    return st.one_of(st.just(value), counts, json_values)


config_fields = st.fixed_dictionaries(
    {},
    optional={
        "n_layer": plausible(1),
        "n_embd": plausible(8),
        "n_head": plausible(2),
        "vocab_size": plausible(16),
        "n_vocab": plausible(16),
        "n_positions": plausible(4),
        "n_ctx": plausible(4),
        "n_inner": st.one_of(st.none(), st.just(32), counts, json_values),
        "layer_norm_epsilon": st.one_of(st.just(1e-5), st.floats(allow_nan=True, allow_infinity=True), json_values),
        "qkv_bias": st.one_of(st.booleans(), json_values),
        "position_embedding": st.one_of(st.sampled_from(["learned", "sinusoidal", "rotary"]), json_values),
        "activation_function": st.one_of(st.sampled_from(["gelu_new", "gelu", "relu"]), json_values),
        "anything_else": json_values,
    },
)


@FUZZ
@given(fields=config_fields, mutate=st.sampled_from(["none", "truncate", "nest", "not-utf8", "list"]))
def test_config_json_fuzz(tmp_path_factory, fields, mutate):
    directory = tmp_path_factory.mktemp("cfg")
    write_safetensors(directory / "model.safetensors", init_params(SMALL, seed=0))
    text = json.dumps(fields).encode()
    if mutate == "truncate":
        text = text[: len(text) // 2]
    elif mutate == "nest":
        text = b'{"n_layer": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    elif mutate == "not-utf8":
        text = text.replace(b"}", b'"\xff"}', 1)
    elif mutate == "list":
        text = b"[" + text + b"]"
    (directory / "config.json").write_bytes(text)
    loads_or_typed_error(Config.from_json_file, directory / "config.json")
    loads_or_typed_error(Config.from_hf_dict, fields)
    loads_or_typed_error(load_model, directory)


def test_the_fuzzed_fields_can_succeed(tmp_path: Path):
    """The strategies' right values load: the fuzz reaches the end of the loader, not only its first check."""
    write_safetensors(tmp_path / "model.safetensors", init_params(SMALL, seed=0))
    fields = {"n_layer": 1, "n_embd": 8, "n_head": 2, "vocab_size": 16, "n_ctx": 4, "n_inner": 32}
    (tmp_path / "config.json").write_text(json.dumps(fields))
    assert load_model(tmp_path)[0] == SMALL
