"""What a new user meets first, checked as they would meet it: the test command's closing summary
(the slowest tests and every skip's reason, under -q), and the commands README.md and docs/ show,
which must run in a fresh clone as written (every local path they name is in the repository, or the
command says it needs a download)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_quiet_suite_still_names_its_slowest_tests_and_every_skip(tmp_path):
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n\n"
        "def test_runs():\n    pass\n\n"
        "@pytest.mark.skip(reason='needs a unicorn')\ndef test_skipped():\n    pass\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(ROOT / "pyproject.toml")]
        + ["--rootdir", str(tmp_path), str(tmp_path / "test_sample.py")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "slowest" in result.stdout and "durations" in result.stdout, result.stdout
    assert "SKIPPED [1]" in result.stdout and "needs a unicorn" in result.stdout, result.stdout


# --- one default for each choice --------------------------------------------------------------


def test_serve_explore_and_the_docs_site_default_to_different_ports():
    import re

    from gpt2.cli import build_parsers
    from gpt2.server.settings import ServerSettings

    parsers = build_parsers()[1]
    serve = parsers["serve"].get_default("port")
    explore = parsers["explore"].get_default("port")
    site = int(re.search(r"^dev_addr: 127\.0\.0\.1:(\d+)$", (ROOT / "mkdocs.yml").read_text(), re.M).group(1))
    assert serve == ServerSettings().port == 8080  # the library's default is the command's
    assert explore == 8000  # the guide's chapters link to the explorer's panels there
    assert len({serve, explore, site}) == 3


# Each command run with its default model (train and convert name it: they have no default), offline
# with nothing cached: how the user reaches the models that ship with the package is the command's own.
OFFLINE_RUNS = {
    "generate": ["generate", "Hello", "-n", "1"],
    "chat": ["chat"],
    "score": ["score", "Hello"],
    "info": ["info"],
    "eval": ["eval", "--data", str(ROOT / "tests" / "data" / "the-verdict.txt")],
    "serve": ["serve", "--port", "0"],
    "explore": ["explore", "--port", "0", "--no-browser"],
    "convert": ["convert", "gpt2", "{tmp}/converted"],
    "train": ["train", "--data", str(ROOT / "tests" / "data" / "the-verdict.txt"), "--init", "gpt2"]
    + ["--out", "{tmp}/run", "--max-steps", "1", "--cache-dir", "{tmp}/tokens"],
}
NEEDS = {"eval": ("torch", "numpy"), "train": ("torch", "numpy"), "serve": ("fastapi", "uvicorn")}
NEEDS["explore"] = ("fastapi", "uvicorn", "numpy")


@pytest.mark.parametrize("command", sorted(OFFLINE_RUNS))
def test_offline_each_command_names_the_packaged_model_as_it_takes_one(tmp_path, command):
    import os
    import shlex

    from gpt2.cli import build_parsers
    from gpt2.packaged import packaged_models

    for module in NEEDS.get(command, ()):
        pytest.importorskip(module)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in OFFLINE_RUNS[command]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    result = subprocess.run(
        [sys.executable, "-m", "gpt2", *argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"gpt2 {command}: error: ") and "Traceback" not in result.stderr, result.stderr
    name = packaged_models()[0]
    assert line.endswith(")") and f"{name} ships with the package (" in line, line
    hint = line[line.rindex("(") + 1 : -1]
    # the hint, typed after the command's name, is a command line its parser takes, asking for that model
    words = shlex.split(hint)
    if words[:2] == ["gpt2", command]:
        words = words[2:]
    required = {"train": ["--data", "x", "--out", "y"], "eval": ["--data", "x"]}.get(command, [])
    args = build_parsers()[1][command].parse_args([*required, *words])
    assert name in (getattr(args, "model", None), getattr(args, "init", None), getattr(args, "src", None)), hint
