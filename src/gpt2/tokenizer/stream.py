"""Decoding ids one at a time, as a model generates them.

A token may end in the middle of a UTF-8 character ("é" can be two tokens,
each one byte of it). Decoding token by token would print U+FFFD twice;
StreamDecoder holds the incomplete bytes back until the character completes.

>>> from gpt2.tokenizer import Tokenizer
>>> tok = Tokenizer.gpt2()
>>> stream = StreamDecoder(tok)
>>> [stream.feed(i) for i in tok.encode("🙂!")]
['', '🙂', '!']
>>> stream.flush()
''
"""

from __future__ import annotations

import codecs

from .tokenizer import Tokenizer


class StreamDecoder:
    """feed(id) -> the text completed by that token; flush() -> whatever is left."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        # Python's incremental UTF-8 decoder keeps an incomplete character's bytes for the next
        # call and replaces bytes that can never become valid UTF-8 at once.
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token: int) -> str:
        return self._utf8.decode(self.tokenizer.decode_single_token_bytes(token))

    def flush(self) -> str:
        """End of stream: bytes still held back are an unfinished character, shown as U+FFFD."""
        text = self._utf8.decode(b"", final=True)
        self._utf8.reset()
        return text
