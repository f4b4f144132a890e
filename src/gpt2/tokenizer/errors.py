"""The tokenizer's typed errors."""

from __future__ import annotations

from ..errors import Gpt2Error


class TokenizerError(Gpt2Error, ValueError):
    """Bad tokenizer input: a disallowed special token, an unknown id, a malformed vocabulary file.

    It is a ValueError too, like the error tiktoken raises in the same places.
    """


class UnknownTokenError(TokenizerError, KeyError):
    """encode_single_token of something that is not one token: a KeyError too, as tiktoken raises there."""

    __str__ = Exception.__str__  # not KeyError's, which would quote the message
