"""pytest collects the docstring examples of `src/gpt2` too; modules built on an optional
library are skipped when that library is not installed (the core suite still runs)."""

import importlib.util

OPTIONAL_MODULES = {
    "torch": [
        "src/gpt2/engines/torch/*",
        "src/gpt2/references/torch_ref.py",
        "src/gpt2/training/*",
    ],
    "numpy": [
        "src/gpt2/engines/numpy_engine.py",
        "src/gpt2/generation/vectorised.py",
        "src/gpt2/references/numpy_ref.py",
        "src/gpt2/training/*",
    ],
    "fastapi": [
        "src/gpt2/server/app.py",
        "src/gpt2/server/routes.py",
    ],
}

collect_ignore_glob = sorted(
    {path for library, paths in OPTIONAL_MODULES.items() if importlib.util.find_spec(library) is None for path in paths}
)
