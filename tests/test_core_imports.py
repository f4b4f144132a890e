"""The core imports with the standard library alone.

Every module of the package is imported in a fresh interpreter in which NumPy,
PyTorch, matplotlib and the other optional libraries cannot be imported. Only
the modules listed in OPTIONAL may fail, and only with our typed error or an
ImportError naming a blocked package.
"""

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import gpt2

# Modules that exist to use an optional library (the NumPy/PyTorch engines, training,
# the verification references). Everything else is core.
OPTIONAL = (
    "gpt2.engines.numpy_engine",
    "gpt2.engines.numpy_weights",
    "gpt2.engines.native.products",  # the C kernels' NumPy side (build.py, which compiles them, is core)
    "gpt2.engines.torch.attention",
    "gpt2.engines.torch.engine",
    "gpt2.engines.torch.kernels",
    "gpt2.engines.torch.device",
    "gpt2.engines.torch.model",
    "gpt2.engines.torch.precision",
    "gpt2.generation.vectorised",
    "gpt2.training",
    "gpt2.references",
    "gpt2.explore",  # the explorer: NumPy, FastAPI and uvicorn (gpt2 explore says so when they are missing)
    "gpt2.server.app",  # FastAPI (the serve extra); the rest of gpt2.server is standard library
    "gpt2.server.routes",
)

PROBE = r"""
import importlib, json, sys
failures = {}
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except BaseException as exc:
        failures[name] = f"{type(exc).__name__}: {exc}"
from gpt2.cli import main
try:
    main(["--help"])
except SystemExit as exc:
    if exc.code != 0:
        failures["gpt2 --help"] = f"exit {exc.code}"
loaded = sorted(m for m in sys.modules if m.split(".")[0] in _BLOCKED)
print(json.dumps({"failures": failures, "loaded": loaded}))
"""


def all_modules():
    root = Path(gpt2.__file__).parent
    names = ["gpt2"]
    for info in pkgutil.walk_packages([str(root)], prefix="gpt2."):
        names.append(info.name)
    return names


def is_optional(name):
    return any(name == p or name.startswith(p + ".") for p in OPTIONAL)


def test_core_imports_without_optional_libraries(blocked_imports):
    modules = all_modules()
    core = [m for m in modules if not is_optional(m) and m != "gpt2.__main__"]
    assert "gpt2.cli" in core and "gpt2.config" in core
    probe = blocked_imports() + PROBE
    out = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(core)],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["failures"] == {}
    assert report["loaded"] == []


def test_cli_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "gpt2", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for name in ("generate", "tokenize", "verify", "train", "convert", "info", "score", "eval"):
        assert name in out.stdout
