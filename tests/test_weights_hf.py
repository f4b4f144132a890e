"""Hugging Face checkpoints written by `transformers` load into our tree and give
GPT2LMHeadModel's logits and greedy tokens; what we write, transformers loads."""

import copy
import json
import os

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from gpt2.config import Config  # noqa: E402
from gpt2.engines.torch.model import GPT2  # noqa: E402
from gpt2.errors import ParamError  # noqa: E402
from gpt2.tensor import Tensor  # noqa: E402
from gpt2.weights import WeightsError, load_model, save_model, write_safetensors  # noqa: E402
from gpt2.weights.safetensors import read_safetensors  # noqa: E402

PROMPT = [46, 206, 75, 218, 180, 62, 26]  # ids < every test vocabulary


def hf_model(seed=0, **config):
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(bos_token_id=0, eos_token_id=0, **config)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # default init makes near-uniform logits; spread them out
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def save_bin(model, directory, *, hub_style=False):
    """What HF's pytorch_model.bin is: torch.save of the state dict. hub_style mimics
    the original openai-community files: no `transformer.` prefix, mask buffers kept."""
    os.makedirs(directory, exist_ok=True)
    model.config.save_pretrained(directory)
    state = model.state_dict()
    if hub_style:
        state = {k.removeprefix("transformer."): v for k, v in state.items()}
        n = model.config.n_positions
        for i in range(model.config.n_layer):
            state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(n, n)).view(1, 1, n, n)
            state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save(state, os.path.join(directory, "pytorch_model.bin"))
    return directory


def hf_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


def our_logits(config, params, ids):
    with torch.no_grad():
        return GPT2.from_params(config, params).eval()(torch.tensor([ids]))[0][0]


def hf_greedy(model, prompt, n=20):
    """transformers' own greedy decoding (with its KV cache)."""
    with torch.no_grad():
        model.generation_config.eos_token_id = None  # no early stop, no suppressed token
        out = model.generate(
            torch.tensor([prompt]),
            max_new_tokens=n,
            do_sample=False,
            pad_token_id=0,
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
        )
    tokens = out[0, len(prompt) :].tolist()
    assert len(tokens) == n
    return tokens


def assert_same_model(hf, config, params, prompt=PROMPT):
    """Logits within 1e-4, and the same 20 greedy tokens: our model, fed transformers'
    greedy continuation, must pick each next token itself (so by induction our greedy
    decoding is the same sequence), checked in one forward pass."""
    ours = GPT2.from_params(config, params).eval()
    with torch.no_grad():
        logits = ours(torch.tensor([prompt]))[0][0]
    assert (hf_logits(hf, prompt) - logits).abs().max().item() <= 1e-4
    tokens = hf_greedy(hf, prompt)
    with torch.no_grad():
        logits = ours(torch.tensor([prompt + tokens[:-1]]))[0][0]
    assert logits[len(prompt) - 1 :].argmax(-1).tolist() == tokens


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    model = hf_model(n_layer=2, n_embd=64, n_head=4, vocab_size=512, n_positions=64)
    root = tmp_path_factory.mktemp("small")
    model.save_pretrained(root / "st")
    save_bin(model, root / "bin")
    save_bin(model, root / "hub_bin", hub_style=True)
    return model, root


@pytest.mark.parametrize("variant", ["st", "bin", "hub_bin"])
def test_small_model_matches_transformers(small, variant):
    model, root = small
    config, params = load_model(root / variant)
    assert config == Config(n_layer=2, n_embd=64, n_head=4, vocab_size=512, n_ctx=64)
    assert list(params) == list(__import__("gpt2.params").params.param_shapes(config))
    assert_same_model(model, config, params)


def test_single_file_and_inferred_config(small, tmp_path):
    model, root = small
    lone = tmp_path / "weights.safetensors"
    lone.write_bytes((root / "st" / "model.safetensors").read_bytes())
    config, params = load_model(lone)  # no config.json: read off the shapes, 64 wide -> 1 head of 64
    assert (config.n_layer, config.n_embd, config.vocab_size, config.n_ctx) == (2, 64, 512, 64)
    assert config.n_head == 1


def test_saved_model_loads_in_transformers_with_same_logits(small, tmp_path):
    model, root = small
    config, params = load_model(root / "st")
    save_model(tmp_path / "out", config, params)
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"config.json", "model.safetensors"}
    again = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "out").eval()
    assert (hf_logits(again, PROMPT) - hf_logits(model, PROMPT)).abs().max().item() <= 1e-6
    config2, params2 = load_model(tmp_path / "out")
    assert config2 == config and all(bytes(params2[k].data) == bytes(params[k].data) for k in params)


def test_convert_command_round_trip(small, tmp_path, capsys):
    from gpt2.cli import main

    model, root = small
    assert main(["convert", str(root / "hub_bin"), str(tmp_path / "conv")]) == 0
    again = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "conv").eval()
    assert (hf_logits(again, PROMPT) - hf_logits(model, PROMPT)).abs().max().item() <= 1e-6
    assert main(["convert", str(root / "st"), str(tmp_path / "conv")]) == 2  # exists: needs --force
    assert "--force" in capsys.readouterr().err
    assert main(["convert", str(root / "st"), str(tmp_path / "conv"), "--force"]) == 0


def test_info_command(small, capsys):
    from gpt2.cli import main

    _, root = small
    assert main(["info", str(root / "st"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "safetensors" and info["dtypes"] == {"F32": 28}
    assert info["parameters"] == Config(n_layer=2, n_embd=64, n_head=4, vocab_size=512, n_ctx=64).num_parameters()
    assert main(["info", str(root / "bin")]) == 0
    assert "parameters" in capsys.readouterr().out


def test_half_precision_is_kept_as_stored(small, tmp_path):
    model, _ = small
    copy.deepcopy(model).half().save_pretrained(tmp_path / "f16")
    config, params = load_model(tmp_path / "f16")
    assert {t.dtype for t in params.values()} == {"F16"}
    diff = our_logits(config, {k: t.to_f32() for k, t in params.items()}, PROMPT) - hf_logits(model, PROMPT)
    assert diff.abs().max().item() < 0.05  # fp16 rounding of the weights, nothing worse


def test_pure_engine_on_the_small_model(small):
    engines = pytest.importorskip("gpt2.engines")
    try:
        import gpt2.engines.pure  # noqa: F401
    except ImportError:
        pytest.skip("the pure engine (gpt2.engines.pure) is not in the tree yet")
    model, root = small
    config, params = load_model(root / "st")
    engine = engines.load_engine("pure", config, params)
    logits = engine.forward(PROMPT, engine.new_cache())
    expected = hf_logits(model, PROMPT)[-1]
    assert max(abs(a - b) for a, b in zip(logits, expected.tolist())) <= 1e-4


# --- the tree is checked -------------------------------------------------------------


def test_wrongly_shaped_wte_is_named(small, tmp_path):
    _, root = small
    tensors, meta = read_safetensors(root / "st" / "model.safetensors")
    tensors = dict(tensors)
    tensors["transformer.wte.weight"] = Tensor.from_floats([0.0] * (511 * 64), (511, 64))
    (tmp_path / "config.json").write_text((root / "st" / "config.json").read_text())
    write_safetensors(tmp_path / "model.safetensors", tensors, meta)
    with pytest.raises(ParamError, match=r"'wte.weight' has shape \[511, 64\], expected \[512, 64\]"):
        load_model(tmp_path)


def test_missing_and_extra_tensors_are_named(small, tmp_path):
    _, root = small
    tensors, meta = read_safetensors(root / "st" / "model.safetensors")
    (tmp_path / "config.json").write_text((root / "st" / "config.json").read_text())
    missing = {k: v for k, v in tensors.items() if k != "transformer.h.1.mlp.c_fc.bias"}
    write_safetensors(tmp_path / "model.safetensors", missing, meta)
    with pytest.raises(ParamError, match="missing tensor 'h.1.mlp.c_fc.bias'"):
        load_model(tmp_path)
    extra = dict(tensors, **{"transformer.h.0.mlp.extra": Tensor.from_floats([1.0], (1,))})
    write_safetensors(tmp_path / "model.safetensors", extra, meta)
    with pytest.raises(ParamError, match="unexpected tensor 'h.0.mlp.extra'"):
        load_model(tmp_path)


def test_untied_lm_head_is_refused(small, tmp_path):
    _, root = small
    tensors, meta = read_safetensors(root / "st" / "model.safetensors")
    wte = tensors["transformer.wte.weight"]
    head = Tensor(wte.shape, "F32", bytes(wte.nbytes))
    write_safetensors(tmp_path / "model.safetensors", dict(tensors, **{"lm_head.weight": head}), meta)
    with pytest.raises(WeightsError, match="lm_head.weight is not equal to wte.weight"):
        load_model(tmp_path / "model.safetensors")


# --- bigger shapes ---------------------------------------------------------------------


def test_xl_width_25_heads_of_64(tmp_path):
    """gpt2-xl's width (1600 = 25 heads of 64) with one layer, both file formats,
    and without config.json the head count comes from the width."""
    model = hf_model(n_layer=1, n_embd=1600, n_head=25, vocab_size=300, n_positions=32)
    model.save_pretrained(tmp_path / "st")
    save_bin(model, tmp_path / "bin")
    for variant in ("st", "bin"):
        config, params = load_model(tmp_path / variant)
        assert (config.n_head, config.head_dim) == (25, 64)
        assert_same_model(model, config, params)
    os.remove(tmp_path / "st" / "config.json")
    config, _ = load_model(tmp_path / "st")
    assert config.n_head == 25


@pytest.mark.slow
def test_full_124m_shape(tmp_path_factory):
    """GPT-2 small's exact shapes (124M parameters, ~500 MB file), random weights."""
    root = tmp_path_factory.mktemp("gpt2_124m")
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config()).eval()
    model.save_pretrained(root)
    config, params = load_model(root)
    assert config == Config.preset("gpt2")
    assert sum(t.numel for t in params.values()) == 124_439_808
    assert_same_model(model, config, params)


def test_convert_refuses_to_replace_a_config_json_without_force(small, tmp_path, capsys):
    from gpt2.cli import main

    _, root = small
    dst = tmp_path / "notes"
    dst.mkdir()
    (dst / "config.json").write_text('{"mine": true}')
    assert main(["convert", str(root / "st"), str(dst)]) == 2
    assert "config.json already exists" in capsys.readouterr().err
    assert (dst / "config.json").read_text() == '{"mine": true}'


def test_convert_to_an_empty_dst_never_writes_the_current_directory(small, tmp_path, capsys, monkeypatch):
    from gpt2.cli import main
    from gpt2.weights import WeightsError, load_model, save_model

    _, root = small
    monkeypatch.chdir(tmp_path)
    assert main(["convert", str(root / "st"), ""]) == 2
    assert "DST is empty" in capsys.readouterr().err
    with pytest.raises(WeightsError, match="output directory name is empty"):
        save_model("", *load_model(root / "st"))
    assert list(tmp_path.iterdir()) == []
