"""One sampling default for the Python API, the command line, chat and the explorer (top-k 40), so
that a seed gives the same tokens whichever way a user asks; the server keeps OpenAI's defaults."""

from __future__ import annotations

import dataclasses
import json

import pytest

from gpt2.cli import build_parsers, main
from gpt2.commands.sampling import defaults
from gpt2.generation import GenerationConfig, Sampler, SamplingConfig, generate, stream
from gpt2.generation.sampling import DEFAULT_TOP_K

PROMPT = "ROMEO:"
SEED = 3
N = 24


def test_the_library_and_the_command_line_share_one_default():
    assert SamplingConfig().top_k == GenerationConfig().top_k == DEFAULT_TOP_K == 40
    for field in dataclasses.fields(GenerationConfig):
        if field.name in defaults():
            assert defaults()[field.name] == field.default, field.name
    help_text = build_parsers()[1]["generate"].format_help()
    assert "0 = all (default 40)" in " ".join(help_text.split())


@pytest.mark.parametrize("engine", ["pure", "numpy"])
def test_the_cli_and_the_python_api_pick_the_same_tokens_for_a_seed(capsys, engine):
    if engine == "numpy":
        pytest.importorskip("numpy")
    from gpt2.engines import load_engine
    from gpt2.tokenizer import Tokenizer
    from gpt2.weights import load_model

    code = main(
        ["generate", "-m", "gpt2-shakespeare", PROMPT, "--seed", str(SEED), "-n", str(N)]
        + ["--engine", engine, "--ignore-eot", "--json"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    cli_ids = json.loads(out)["samples"][0]["ids"]
    assert len(cli_ids) == N

    config, params = load_model("gpt2-shakespeare")
    tok = Tokenizer.gpt2()
    api = load_engine(engine, config, params)
    try:
        # the README's way: a Sampler over the default SamplingConfig
        sampled = list(generate(api, tok.encode(PROMPT), N, Sampler(SamplingConfig(), seed=SEED), stop_ids=()))
        # and the GenerationConfig way, every field at its default but the seed
        streamed = [
            s.token
            for s in stream(api, tok.encode(PROMPT), GenerationConfig(max_new_tokens=N, seed=SEED, stop_ids=()), tok)
        ]
    finally:
        api.close()
    assert sampled == streamed == cli_ids


def test_the_server_keeps_openais_defaults():
    """OpenAI's API defines temperature 1 and no top-k: the server builds its own config from the
    request, never from the library's default."""
    from gpt2.config import Config
    from gpt2.server.completions import prepare
    from gpt2.server.schemas import parse_completion
    from gpt2.server.settings import ServerSettings
    from gpt2.tokenizer import Tokenizer

    params = parse_completion({"model": "gpt2", "prompt": "Hi"})
    assert params.top_k == 0 and params.temperature == 1.0 and params.top_p == 1.0
    prepared = prepare(params, "gpt2", Tokenizer.gpt2(), Config.preset("gpt2"), ServerSettings())
    sampling = prepared.choices[0].config.sampling  # what the scheduler samples with
    assert (sampling.temperature, sampling.top_k, sampling.top_p) == (1.0, 0, 1.0)
