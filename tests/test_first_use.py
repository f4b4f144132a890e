"""What a new user meets first, checked as they would meet it: the test command's closing summary
(the slowest tests and every skip's reason, under -q), and the commands README.md and docs/ show,
which must run in a fresh clone as written (every local path they name is in the repository, or the
command says it needs a download)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
