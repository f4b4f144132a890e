"""GPT-2's byte-level BPE tokenizer, written from scratch on the standard library.

>>> from gpt2.tokenizer import Tokenizer
>>> tok = Tokenizer.gpt2()
>>> tok.encode("Hello world")
[15496, 995]

See docs/tokenizer.md for how it works.
"""

from .errors import TokenizerError
from .stream import StreamDecoder
from .tokenizer import Tokenizer

__all__ = ["Tokenizer", "StreamDecoder", "TokenizerError"]
