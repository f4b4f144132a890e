"""The explorer's typed error: a request it cannot answer, said in one sentence.

The JSON API turns it into a 400 response whose body is
`{"error": {"message": ..., "type": "invalid_request_error"}}`; the library raises it
like any other `Gpt2Error`, so a program using `Explorer` directly sees the same words.

>>> str(ExploreError("the text is empty"))
'the text is empty'
"""

from __future__ import annotations

from ..errors import Gpt2Error


class ExploreError(Gpt2Error, ValueError):
    """A request the explorer refuses: empty or too long input, an unknown engine, an id out of range."""
