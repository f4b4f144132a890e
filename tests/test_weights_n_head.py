"""No silent guesses: without a config file the head count cannot be read off any tensor
shape, so it is guessed from the width, and a wrong guess changes the output without
any error. The library says when it guessed (`open_model(...).n_head_guessed`), takes
`n_head=` to set it, and every command that loads a model warns about a guess and takes
`--n-head N`."""

from __future__ import annotations

import json

import pytest

from gpt2.cli import main
from gpt2.config import Config
from gpt2.engines import load_engine
from gpt2.errors import ConfigError, Gpt2Error
from gpt2.params import init_params
from gpt2.weights import load_model, open_model, save_model, write_safetensors

# 64 wide with 4 heads: no GPT-2 width, so the guess is 64 / 64 = 1 head, which is wrong.
TRUE = Config(n_layer=1, n_embd=64, n_head=4, vocab_size=50257, n_ctx=8)


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """model.safetensors without a config.json."""
    directory = tmp_path_factory.mktemp("bare")
    write_safetensors(directory / "model.safetensors", init_params(TRUE, seed=2))
    return directory


@pytest.fixture(scope="module")
def with_config(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("full") / "m", TRUE, init_params(TRUE, seed=2))


def test_a_guess_is_reported(bare):
    loaded = open_model(bare)
    assert loaded.n_head_guessed and loaded.config.n_head == 1
    assert "n_head=1 is a guess from n_embd=64" in loaded.guess_warning
    assert loaded.files.config is None


def test_a_wrong_guess_changes_the_output_silently(bare, with_config):
    """Why the warning exists: both load and run, and disagree."""
    guessed = open_model(bare)
    right = open_model(with_config)
    ids = [464, 3290, 318]
    logits = []
    for loaded in (guessed, right):
        engine = load_engine("pure", loaded.config, loaded.params)
        try:
            logits.append(list(engine.forward(ids, engine.new_cache())))
        finally:
            engine.close()
    assert max(abs(x - y) for x, y in zip(*logits)) > 1e-3


def test_n_head_sets_it_and_is_then_no_guess(bare, with_config):
    loaded = open_model(bare, n_head=4)
    assert not loaded.n_head_guessed and loaded.guess_warning is None
    assert loaded.config == TRUE
    assert load_model(bare, n_head=4)[0] == TRUE
    assert open_model(with_config).n_head_guessed is False


@pytest.mark.parametrize("n_head, error, message", [(3, Gpt2Error, "divisible"), (0, ConfigError, "positive")])
def test_an_impossible_n_head_is_an_error(bare, n_head, error, message):
    with pytest.raises(error, match=message):
        open_model(bare, n_head=n_head)


def test_n_head_that_contradicts_the_config_file(with_config):
    assert open_model(with_config, n_head=4).config == TRUE
    with pytest.raises(ConfigError, match="n_head=8 contradicts .*config.json, which says n_head=4"):
        open_model(with_config, n_head=8)


# --- the commands ------------------------------------------------------------------------------


def warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if ": warning: " in line]


@pytest.mark.parametrize(
    "argv",
    [
        ["generate", "--engine", "pure", "-n", "1", "--seed", "0", "Hello"],
        ["score", "--engine", "pure", "Hello world"],
        ["info"],
    ],
    ids=["generate", "score", "info"],
)
def test_every_command_warns_about_a_guess_and_takes_n_head(bare, capsys, argv):
    model = ["--model", str(bare)] if argv[0] != "info" else [str(bare)]
    assert main([*argv, *model]) == 0
    found = warnings(capsys.readouterr().err)
    assert len(found) == 1 and found[0].startswith(f"gpt2 {argv[0]}: warning: ")
    assert "n_head=1 is a guess" in found[0] and "--n-head N" in found[0]
    assert main([*argv, *model, "--n-head", "4"]) == 0
    assert warnings(capsys.readouterr().err) == []


def test_info_says_where_the_head_count_came_from(bare, capsys):
    assert main(["info", str(bare), "--n-head", "4", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["n_head"] == 4 and info["n_head_guessed"] is False and info["config_file"] is None
    assert main(["info", str(bare)]) == 0
    assert "n_head guessed from the width" in capsys.readouterr().out


def test_convert_warns_and_writes_the_given_head_count(bare, tmp_path, capsys):
    assert main(["convert", str(bare), str(tmp_path / "guessed")]) == 0
    assert len(warnings(capsys.readouterr().err)) == 1
    assert json.loads((tmp_path / "guessed" / "config.json").read_text())["n_head"] == 1
    assert main(["convert", str(bare), str(tmp_path / "right"), "--n-head", "4"]) == 0
    assert warnings(capsys.readouterr().err) == []
    assert json.loads((tmp_path / "right" / "config.json").read_text())["n_head"] == 4


def test_n_head_against_a_config_file_on_the_command_line(with_config, capsys):
    assert main(["info", str(with_config), "--n-head", "8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "contradicts" in err
