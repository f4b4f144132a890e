"""One command line: every subcommand's parser walked for consistent flags, argparse errors that name
the subcommand, --quiet and -v everywhere, --device auto, install hints that say how this project is
installed, and `gpt2 verify` honest in a minimal install."""

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gpt2.cli import COMMANDS, build_parsers, main
from gpt2.commands.common import DEFAULT_MODEL

SRC = Path(__file__).resolve().parent.parent / "src" / "gpt2"
CLI = "\nfrom gpt2.cli import main\nsys.exit(main(sys.argv[1:]))\n"

# Commands that run or read a model take it as -m/--model with one default. `convert SRC DST` names
# two paths and `train --init MODEL` an optional starting point; `info` also takes it positionally.
MODEL_COMMANDS = {"generate", "chat", "score", "info", "eval", "tokenize", "detokenize", "serve", "explore"}
NO_MODEL = {"models", "verify", "convert", "train"}
REQUIRED = {"train": ["--data", "x", "--out", "y"], "eval": ["--data", "x"], "convert": ["a", "b"]}


@pytest.fixture(scope="module")
def parsers():
    return build_parsers()[1]


def options(parser):
    """{option string: action} of a parser (argparse keeps them in _actions; a test may look)."""
    return {s: a for a in parser._actions for s in a.option_strings}


def test_every_command_is_listed_once(parsers):
    assert list(parsers) == list(COMMANDS)
    assert set(COMMANDS) == MODEL_COMMANDS | NO_MODEL


def test_every_option_has_help_and_every_command_a_description(parsers):
    for name, parser in parsers.items():
        assert parser.description, name
        for action in parser._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, (name, action.option_strings or action.dest)


def test_every_command_has_quiet_and_verbose(parsers):
    for name, parser in parsers.items():
        flags = options(parser)
        assert flags.get("-q") is flags.get("--quiet") is not None, name
        assert flags.get("-v") is flags.get("--verbose") is not None, name
        assert parser.parse_args([*REQUIRED.get(name, []), "-v", "-v"]).verbose == 2, name
        assert parser.parse_args([*REQUIRED.get(name, []), "-q"]).quiet is True, name
        assert parser.parse_args(REQUIRED.get(name, [])).quiet is False, name


def test_the_output_flags_are_defined_once(parsers):
    """-q, -v and --json are one action each, the same everywhere: the same help for -q and -v,
    a store_true --json wherever a command prints a result with a shape."""
    quiet = {options(p)["--quiet"].help for p in parsers.values()}
    verbose = {options(p)["--verbose"].help for p in parsers.values()}
    assert len(quiet) == len(verbose) == 1
    with_json = {name for name, p in parsers.items() if "--json" in options(p)}
    assert with_json == {"generate", "score", "tokenize", "info", "models", "eval", "verify"}
    for name in with_json:
        action = options(parsers[name])["--json"]
        assert isinstance(action, argparse._StoreTrueAction) and action.help.startswith("print "), name


@pytest.mark.parametrize("command", ["train", "eval"])
def test_train_and_eval_take_q_from_the_command_line(capsys, command):
    """Refused before (`gpt2 train -q`: unrecognized arguments); now -q is read as --quiet, and the
    command goes on to its own check of --data."""
    code = main([command, *REQUIRED[command], "-q"] + (["--data", "/no/such/file"] if command == "eval" else []))
    err = capsys.readouterr().err
    assert code == 2 and "unrecognized arguments" not in err and f"gpt2 {command}: error:" in err


def test_model_option_is_the_same_wherever_a_model_is_taken(parsers):
    for name in MODEL_COMMANDS:
        flags = options(parsers[name])
        assert flags.get("-m") is flags.get("--model") is not None, name
        assert flags["--model"].default == DEFAULT_MODEL == "gpt2", name  # one default (docs/index.md)
    for name in NO_MODEL:
        assert "--model" not in options(parsers[name]), name


def test_a_flag_means_the_same_thing_in_every_command(parsers):
    meaning = {}
    for name, parser in parsers.items():
        for flag, action in options(parser).items():
            key = (action.dest, type(action).__name__)
            meaning.setdefault(flag, {}).setdefault(key, []).append(name)
    clashes = {flag: uses for flag, uses in meaning.items() if len(uses) > 1}
    assert not clashes, clashes


def test_device_is_auto_by_default_everywhere(parsers):
    takers = [name for name, parser in parsers.items() if "--device" in options(parser)]
    assert set(takers) >= {"generate", "chat", "score", "train", "eval"}
    for name in takers:
        action = options(parsers[name])["--device"]
        assert action.default in ("auto", None) and "auto" in action.help, name
        assert parsers[name].parse_args([*REQUIRED.get(name, []), "--device", "auto"]).device == "auto"


@pytest.mark.parametrize("command", COMMANDS)
def test_argparse_errors_name_the_subcommand(capsys, command):
    with pytest.raises(SystemExit) as exit_:
        main([command, *REQUIRED.get(command, []), "--no-such-option"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert f"gpt2 {command}: error: unrecognized arguments: --no-such-option" in err


def test_a_bad_value_names_the_subcommand(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "hi", "--top-k", "many"])
    assert "gpt2 generate: error: argument --top-k: invalid int value" in capsys.readouterr().err


def test_tokenize_joins_words_as_generate_does(capsys):
    assert main(["tokenize", "Hello", "world", "--ids"]) == 0
    assert capsys.readouterr().out.split() == ["15496", "995"]
    assert main(["tokenize", "Hello world", "--ids"]) == 0
    assert capsys.readouterr().out.split() == ["15496", "995"]


def test_tokenize_and_detokenize_use_the_models_tokenizer(tmp_path, capsys, vocab_dir):
    (tmp_path / "model").mkdir()
    for name in ("encoder.json", "vocab.bpe"):
        (tmp_path / "model" / name).write_bytes((vocab_dir / name).read_bytes())
    assert main(["tokenize", "-m", str(tmp_path / "model"), "Hello", "--ids"]) == 0
    assert capsys.readouterr().out.split() == ["15496"]
    assert main(["detokenize", "-m", str(tmp_path / "model"), "15496"]) == 0
    assert capsys.readouterr().out == "Hello"


def test_quiet_silences_everything_but_the_result_and_errors(capsys):
    assert main(["tokenize", "Hello", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "15496" in out
    assert main(["tokenize", "Hello"]) == 0
    assert "1 token" in capsys.readouterr().err  # the summary the quiet run left out
    assert main(["info", "no/such/model", "--quiet"]) == 2
    assert "gpt2 info: error:" in capsys.readouterr().err  # errors still show


def test_verbose_adds_the_traceback_of_an_error(capsys):
    assert main(["info", "no/such/model", "-v"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("gpt2 info: error:")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--engine", "numpy", "--device", "cuda"], "--device cuda runs the torch engine"),
        (["--engine", "pure", "--device", "mps"], "--device mps runs the torch engine"),
    ],
)
def test_device_and_engine_must_agree(capsys, argv, message):
    assert main(["generate", "hi", *argv]) == 2
    assert message in capsys.readouterr().err


def test_device_cuda_selects_the_torch_engine():
    from gpt2.commands.common import engine_name

    pytest.importorskip("torch")
    args = argparse.Namespace(engine=None, device="cuda")
    assert engine_name(args) == "torch"
    assert engine_name(argparse.Namespace(engine=None, device="cuda:1")) == "torch"
    assert engine_name(argparse.Namespace(engine="numpy", device="cpu")) == "numpy"


def test_install_hints_say_how_this_project_is_installed():
    hints = []
    for path in SRC.rglob("*.py"):
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for m in re.finditer(r"pip install[^\n]{0,30}", line):
                hints.append((path.relative_to(SRC), line_no, m.group(0)))
    assert hints
    wrong = [h for h in hints if not re.match(r'pip install -e \\?"\.\[', h[2])]
    assert not wrong, wrong


def test_threadpoolctl_is_in_the_extras_that_bring_the_numpy_engine():
    text = (SRC.parent.parent / "pyproject.toml").read_text()
    for extra in ("numpy", "torch", "test"):
        block = re.search(rf"^{extra} = \[(.*?)\]", text, re.S | re.M).group(1)
        assert "threadpoolctl" in block, extra


def test_verify_without_numpy_and_torch_says_so_and_exits_1(blocked_imports):
    without = blocked_imports(("numpy", "torch")) + CLI
    out = subprocess.run([sys.executable, "-c", without, "verify"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    assert "NOT VERIFIED: no reference could run" in out.stdout and 'pip install -e ".[numpy]"' in out.stdout
    out = subprocess.run([sys.executable, "-c", without, "verify", "--json"], capture_output=True, text=True)
    report = json.loads(out.stdout)
    assert out.returncode == 1 and report["ok"] is False and report["references_ran"] is False


def test_verify_with_one_reference_is_verified(capsys):
    pytest.importorskip("numpy")
    assert main(["verify", "--reference", "numpy", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["references_ran"] is True
