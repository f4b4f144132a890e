import dataclasses

import pytest

from gpt2 import Config
from gpt2.errors import ConfigError, ParamError
from gpt2.params import init_params, param_shapes, validate_params


@pytest.mark.parametrize(
    "name,layers,width,heads,params_m",
    [
        ("gpt2", 12, 768, 12, 124),
        ("gpt2-medium", 24, 1024, 16, 355),
        ("gpt2-large", 36, 1280, 20, 774),
        ("gpt2-xl", 48, 1600, 25, 1558),
    ],
)
def test_presets_match_published_sizes(name, layers, width, heads, params_m):
    c = Config.preset(name)
    assert (c.n_layer, c.n_embd, c.n_head, c.vocab_size, c.n_ctx) == (layers, width, heads, 50257, 1024)
    assert round(c.num_parameters() / 1e6) == params_m


def test_config_is_frozen_and_validated():
    c = Config.preset("gpt2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.n_layer = 3
    with pytest.raises(ConfigError, match="divisible"):
        Config(n_embd=100, n_head=3)
    with pytest.raises(ConfigError):
        Config(n_layer=0)
    with pytest.raises(ConfigError, match="unknown model size"):
        Config.preset("gpt5")


def test_hf_dict_round_trip():
    c = Config(n_layer=3, n_embd=64, n_head=4, n_ctx=32, vocab_size=100)
    assert Config.from_hf_dict(c.to_hf_dict()) == c


def test_init_params_shapes_and_statistics():
    c = Config(n_layer=2, n_embd=32, n_head=4, vocab_size=300, n_ctx=16)
    p = init_params(c, seed=3)
    validate_params(p, c)
    assert list(p) == list(param_shapes(c))
    wte = p["wte.weight"].to_array()
    mean = sum(wte) / len(wte)
    std = (sum((x - mean) ** 2 for x in wte) / len(wte)) ** 0.5
    assert abs(mean) < 0.002 and abs(std - 0.02) < 0.002
    proj = p["h.0.mlp.c_proj.weight"].to_array()
    pstd = (sum(x * x for x in proj) / len(proj)) ** 0.5
    assert abs(pstd - 0.02 / 2) < 0.002  # 1/sqrt(2 * n_layer) = 1/2
    assert set(p["h.1.ln_2.weight"].to_array()) == {1.0}
    assert set(p["h.1.attn.c_attn.bias"].to_array()) == {0.0}
    assert init_params(c, seed=3)["wte.weight"].data == p["wte.weight"].data
    assert init_params(c, seed=4)["wte.weight"].data != p["wte.weight"].data


def test_validate_names_the_bad_tensor():
    c = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10, n_ctx=4)
    p = init_params(c)
    bad = dict(p)
    del bad["h.0.mlp.c_fc.bias"]
    with pytest.raises(ParamError, match="h.0.mlp.c_fc.bias"):
        validate_params(bad, c)
    bad = dict(p, **{"h.0.attn.bias": p["ln_f.bias"]})
    with pytest.raises(ParamError, match="h.0.attn.bias"):
        validate_params(bad, c)
    bad = dict(p, **{"wte.weight": p["wpe.weight"]})
    with pytest.raises(ParamError, match="wte.weight"):
        validate_params(bad, c)
