"""The project's typed errors.

Everything a user can get wrong (a bad file, a bad option, a missing model)
raises a subclass of :class:`Gpt2Error`. The command line catches exactly this
family and prints its message, so a user mistake is one clear line and never a
traceback; anything else escaping is a bug.
"""


def install_hint(extra: str) -> str:
    """How to install an optional part, the way this project is installed (from a clone).

    >>> install_hint("numpy")
    'pip install -e ".[numpy]"'
    """
    return f'pip install -e ".[{extra}]"'


class Gpt2Error(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(Gpt2Error, ValueError):
    """A model configuration is impossible (for example n_embd not divisible by n_head)."""


class ParamError(Gpt2Error, ValueError):
    """A parameter tree is missing a tensor, has an extra one, or one of the wrong shape."""


class GenerationError(Gpt2Error, ValueError):
    """Bad sampling settings (negative temperature, top_p outside (0, 1], ...)."""


class EngineUnavailable(Gpt2Error, ImportError):
    """An engine's optional dependency (NumPy, PyTorch) is not installed."""
