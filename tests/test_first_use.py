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
        "@pytest.mark.skip(reason='needs a unicorn')\ndef test_skipped():\n    pass\n\n"
        "def test_fails():\n    assert 1 == 2\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(ROOT / "pyproject.toml")]
        + ["--rootdir", str(tmp_path), str(tmp_path / "test_sample.py")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "slowest" in result.stdout and "durations" in result.stdout, result.stdout
    assert "SKIPPED [1]" in result.stdout and "needs a unicorn" in result.stdout, result.stdout
    assert "FAILED test_sample.py::test_fails" in result.stdout, result.stdout  # -rs alone would drop it


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


# --- every documented command runs in a clone -----------------------------------------------------

# A command that cannot run in a bare clone says so in a trailing comment with this mark.
MARK = "needs a download"
# The guide's chapters (docs/learn/) are not read here: CI runs every block of them, in order, as Sybil
# and as notebooks, which checks more than this can (their files are made by the chapters' own code).
DOCUMENTS = ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]
SHELL_BLOCK = ("bash", "sh", "shell", "console", "text")
PATH_SUFFIXES = (".txt", ".json", ".jsonl", ".md", ".py", ".safetensors", ".bin", ".index", ".tiktoken", ".bpe")
# Options whose value a command writes (or a directory it makes), not reads; and options whose value is
# not a path at all (curl's header and body).
OUTPUT_OPTIONS = {"--out", "-o", "--cache-dir", "--output", "--output-dir", "--to"}
NOT_PATHS = {"-H", "-d", "--header", "--data-raw"}


def shell_commands(text: str):
    """(line number, command) for each command of the document's shell blocks: a ```bash block's
    lines, a ```console block's `$ ` lines; continuation lines joined."""
    import re

    for block in re.finditer(r"^```([a-z]*)[^\n]*\n(.*?)^```", text, re.S | re.M):
        language, body = block.group(1), block.group(2)
        if language not in SHELL_BLOCK:
            continue
        start = text.count("\n", 0, block.start(2)) + 1
        pending, first = "", 0
        for offset, raw in enumerate(body.splitlines()):
            line = raw.rstrip()
            if language in ("console", "text") and not pending:
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            if not pending:
                first = start + offset
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            command, pending = pending + line, ""
            if command.strip() and not command.lstrip().startswith("#"):
                yield first, command


def named_paths(command: str) -> tuple[list[str], list[str]]:
    """The local paths a command reads and the ones it writes (a heuristic: a word with a slash or a
    file suffix, not an option, a URL or a package spec)."""
    import shlex

    try:
        words = shlex.split(command, comments=True)
    except ValueError:  # an unbalanced quote in an example ($'...' and the like): nothing to check
        return [], []
    reads, writes = [], []
    previous = ""
    for i, word in enumerate(words):
        if word in (";", "&&", "|", "||"):
            previous = ""
            continue
        looks = ("/" in word or word.endswith(PATH_SUFFIXES)) and not word.startswith("-")
        looks = looks and ":" not in word and "=" not in word and not word.startswith(("$", ".[", "@"))
        looks = looks and previous not in NOT_PATHS
        looks = looks and not any(c in word for c in "{}<>\"'")
        if looks:
            written = previous in OUTPUT_OPTIONS or previous.startswith(">")
            # `gpt2 convert SRC DST`: DST is written
            if i >= 3 and words[i - 3 : i - 1] == ["gpt2", "convert"]:
                written = True
            (writes if written else reads).append(word)
        previous = word
    return reads, writes


def exists_in_clone(path: str, made: set[str]) -> bool:
    import glob

    if path.startswith(("~", "/")) or path.startswith(".."):
        return False  # outside the clone
    clean = path.rstrip("/")
    if any(clean == m or clean.startswith(m.rstrip("/") + "/") for m in made):
        return True
    return bool(glob.glob(str(ROOT / clean))) or (ROOT / clean).exists()


def test_every_documented_command_names_only_paths_a_clone_has():
    problems = []
    for document in DOCUMENTS:
        text = (ROOT / document).read_text(encoding="utf-8")
        made: set[str] = set()
        for line, command in shell_commands(text):
            reads, writes = named_paths(command)
            made.update(writes)
            if MARK in command:
                continue
            missing = [p for p in reads if not exists_in_clone(p, made)]
            if missing:
                problems.append(f"{document}:{line}: {', '.join(missing)}  <- {command.strip()}")
    assert not problems, "\n".join(problems)


def test_the_path_check_finds_what_a_clone_lacks():
    """The check itself: the command README used to show is caught, the marked one passes."""
    old = "gpt2 train --data ../shared/data/tinyshakespeare.txt --config tiny --out runs/tiny --max-steps 500"
    reads, writes = named_paths(old)
    assert reads == ["../shared/data/tinyshakespeare.txt"] and writes == ["runs/tiny"]
    assert not exists_in_clone(reads[0], set())
    assert exists_in_clone("runs/tiny/model.safetensors", {"runs/tiny"})
    assert exists_in_clone("tests/data/the-verdict.txt", set())
    assert list(shell_commands("```console\n$ gpt2 eval \\\n  --data x.txt\nloss 1\n```\n")) == [
        (2, "gpt2 eval    --data x.txt")
    ]
