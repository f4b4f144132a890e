"""The tokenizer's typed error."""

from __future__ import annotations

from ..errors import Gpt2Error


class TokenizerError(Gpt2Error, ValueError):
    """Bad tokenizer input: a disallowed special token, an unknown id, a malformed vocabulary file.

    It is a ValueError too, like the error tiktoken raises in the same places.
    """
