"""Training data: text -> token ids (cached) -> sliding windows -> shuffled batches.

The pipeline, one step per function:

1. :func:`read_texts` reads a file, or every file under a directory (sorted, hidden
   files skipped), and refuses anything that is not UTF-8 text;
2. :func:`load_tokens` tokenises them, joined by the end-of-text token, into a
   uint16 file named by the hash of the text and of the tokenizer, so a second
   run (or a resume) skips the tokenisation; the file carries its token count and
   the sha256 of its tokens, checked on every read, so a damaged cache is rebuilt,
   never trusted;
3. :func:`split_tokens` cuts the stream in two contiguous parts, train then
   validation (contiguous, so no overlapping window leaks text between them);
4. :class:`Windows` views a part as windows of `context + 1` tokens, one every
   `stride` tokens: inputs are the first `context`, targets the last `context`;
5. :class:`WindowSampler` visits the training windows in a seeded random order,
   one permutation per epoch; its whole state is (epoch, cursor), which the
   checkpoint saves, so a resumed run sees exactly the batches it would have seen.

>>> import numpy as np
>>> w = Windows(np.arange(10, dtype=np.uint16), context=4, stride=2)
>>> len(w), list(w.starts)
(3, [0, 2, 4])
>>> x, y = w.batch([1])
>>> x.tolist(), y.tolist()
([[2, 3, 4, 5]], [[3, 4, 5, 6]])
"""

from __future__ import annotations

import array
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_write_bytes
from .errors import DataError

TOKEN_FILE_VERSION = b"gpt2-tokens-v1"  # part of the cache key (and of every checkpoint's data key)
# The cache file: this magic, the token count (8 bytes, little-endian), the sha256 of the
# token bytes, then the tokens (uint16, little-endian).
CACHE_MAGIC = b"gpt2-tokens-v2\n\x00"
CACHE_HEADER = len(CACHE_MAGIC) + 8 + 32
CACHE_SUFFIX = ".tokens"
_PROBE = "Hello world! <|endoftext|> 123 \u00e9t\u00e9 \U0001f600\n\n  spaces"


# --- 1. reading ------------------------------------------------------------------------


def data_files(path: str | Path) -> list[Path]:
    """The file itself, or every regular file under a directory, sorted, hidden ones skipped."""
    if not str(path).strip():  # Path("") is ".": an unset shell variable must not mean "every file here"
        raise DataError("the data path is empty")
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise DataError(f"no files in directory {path}")
        return files
    raise DataError(f"no such file or directory: {path}")


def default_cache_dir() -> Path:
    """Where tokenized texts are kept between runs: $XDG_CACHE_HOME/gpt2/tokens (~/.cache/...)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gpt2" / "tokens"


def read_text(path: Path) -> str:
    """The file as text; a binary file (NUL bytes or invalid UTF-8) is a DataError."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if b"\x00" in raw:
        raise DataError(f"{path} is a binary file, not UTF-8 text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (invalid byte at offset {exc.start})") from None


def read_texts(path: str | Path) -> list[str]:
    return [read_text(p) for p in data_files(path)]


# --- 2. tokenising, cached -------------------------------------------------------------


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash that changes when the tokenizer would tokenise differently."""
    probe = tokenizer.encode_ordinary(_PROBE)
    blob = f"{type(tokenizer).__name__}|{tokenizer.eot_token}|{probe}".encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def tokens_key(texts: Sequence[str], tokenizer) -> str:
    """The cache key: hash of the file contents (in order) and of the tokenizer."""
    h = hashlib.sha256(TOKEN_FILE_VERSION)
    h.update(tokenizer_fingerprint(tokenizer).encode())
    for text in texts:
        data = text.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:32]


def tokenize_texts(texts: Sequence[str], tokenizer) -> np.ndarray:
    """Token ids of every text, each followed by the end-of-text token, as uint16."""
    ids = array.array("H")  # 2 bytes a token, not a Python int's 28
    try:
        for text in texts:
            ids.extend(tokenizer.encode_ordinary(text))
            ids.append(tokenizer.eot_token)
    except OverflowError:
        raise DataError("token ids above 65535 do not fit the uint16 token cache") from None
    return np.frombuffer(ids, dtype=np.uint16).copy()


def cache_path(cache_dir: str | Path, key: str) -> Path:
    return Path(cache_dir) / f"{key}{CACHE_SUFFIX}"


def token_cache_bytes(tokens: np.ndarray) -> bytes:
    """The cache file of `tokens`: header (magic, count, sha256), then the tokens."""
    data = tokens.astype("<u2").tobytes()
    return CACHE_MAGIC + len(tokens).to_bytes(8, "little") + hashlib.sha256(data).digest() + data


def read_token_cache(path: Path, eot_token: int) -> np.ndarray | None:
    """The cached tokens, memory-mapped (paged in as windows are read), or None when the
    file is missing or fails a check (its magic, its length against the count in its
    header, the sha256 of its tokens, the final end-of-text token), so the caller
    tokenises again. Hashing reads the file once: about a second a gigabyte."""
    try:
        with open(path, "rb") as f:
            header = f.read(CACHE_HEADER)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return None
    if len(header) < CACHE_HEADER or not header.startswith(CACHE_MAGIC):
        return None
    count = int.from_bytes(header[len(CACHE_MAGIC) : len(CACHE_MAGIC) + 8], "little")
    if count == 0 or size != CACHE_HEADER + 2 * count:
        return None
    tokens = np.memmap(path, dtype="<u2", mode="r", offset=CACHE_HEADER, shape=(count,))
    if hashlib.sha256(tokens.data).digest() != header[-32:]:
        return None
    return tokens if int(tokens[-1]) == eot_token else None


def load_tokens(
    path: str | Path,
    tokenizer,
    cache_dir: str | Path | None,
    on_tokenize: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, str]:
    """Tokens of FILE_OR_DIR and their cache key. With a cache directory the token file
    `<cache_dir>/<key>.tokens` is reused when present and intact, and written
    (atomically) when not. `on_tokenize(files, characters)` is called before the
    (slow) tokenisation, if any."""
    texts = read_texts(path)
    if not any(t.strip() for t in texts):
        raise DataError(f"{path} is empty")
    key = tokens_key(texts, tokenizer)
    cache_file = cache_path(cache_dir, key) if cache_dir is not None else None
    cached = read_token_cache(cache_file, tokenizer.eot_token) if cache_file is not None else None
    if cached is not None:
        return cached, key
    if on_tokenize is not None:
        on_tokenize(len(texts), sum(map(len, texts)))
    tokens = tokenize_texts(texts, tokenizer)
    if cache_file is None:
        return tokens, key
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cache_file, token_cache_bytes(tokens))
    except OSError:
        pass  # a cache we cannot write only costs time on the next run
    return tokens, key


def check_vocabulary(tokens: np.ndarray, vocab_size: int, name: str, tokenizer=None) -> None:
    """Every id must have a row in the model's embedding (a model with its own small
    vocabulary cannot read GPT-2 token ids); otherwise a DataError, not an IndexError.
    Given the tokenizer, the scan is skipped when no id it makes can be too large."""
    if getattr(tokenizer, "n_vocab", vocab_size + 1) <= vocab_size:
        return
    largest = int(tokens.max()) if len(tokens) else -1
    if largest >= vocab_size:
        raise DataError(
            f"{name} tokenises to id {largest}, but the model's vocabulary has only {vocab_size} "
            "entries; it needs a model made for the GPT-2 tokenizer (vocab_size >= 50257)"
        )


# --- 3. split --------------------------------------------------------------------------


def split_tokens(
    tokens: np.ndarray, val_fraction: float, context: int, name: str = "the data"
) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation): the last `val_fraction` of the stream is validation; each part
    must hold at least one window of `context + 1` tokens."""
    n = len(tokens)
    n_val = max(round(n * val_fraction), context + 1) if val_fraction > 0 else 0
    if n - n_val < context + 1:
        needs = f"training needs {context + 1}" + (f" and validation {n_val}" if n_val else "")
        raise DataError(
            f"{name} has {n} tokens, too short for context length {context} ({needs}); "
            f"use more text, a smaller --context-length or a smaller --val-fraction"
        )
    return tokens[: n - n_val], tokens[n - n_val :]


# --- 4. windows ------------------------------------------------------------------------


@dataclass
class Windows:
    """Windows of `context + 1` tokens every `stride` tokens over a 1-D uint16 array."""

    tokens: np.ndarray
    context: int
    stride: int

    def __post_init__(self) -> None:
        self.starts = range(0, max(len(self.tokens) - self.context, 0), self.stride)  # O(1) memory

    def __len__(self) -> int:
        return len(self.starts)

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets, both [len(indices), context] int64."""
        stacked = np.stack([self.tokens[self.starts[i] : self.starts[i] + self.context + 1] for i in indices])
        rows = torch.from_numpy(stacked.astype(np.int64))  # [B, context + 1]
        return rows[:, :-1], rows[:, 1:]


# --- 5. seeded order -------------------------------------------------------------------


class WindowSampler:
    """Window indices in a seeded random order, a fresh permutation every epoch.

    >>> s = WindowSampler(5, seed=1); a = s.take(7); state = s.state_dict()
    >>> t = WindowSampler(5, seed=1); t.load_state_dict(state); t.take(3) == s.take(3)
    True
    """

    def __init__(self, num_windows: int, seed: int) -> None:
        self.num_windows = num_windows
        self.seed = seed
        self.epoch = 0
        self.cursor = 0
        self._order: torch.Tensor | None = None

    def _permutation(self) -> torch.Tensor:
        if self._order is None:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            self._order = torch.randperm(self.num_windows, generator=g)
        return self._order

    def take(self, n: int) -> list[int]:
        out: list[int] = []
        while len(out) < n:
            order = self._permutation()
            chunk = order[self.cursor : self.cursor + n - len(out)].tolist()
            out.extend(chunk)
            self.cursor += len(chunk)
            if self.cursor >= self.num_windows:
                self.epoch, self.cursor, self._order = self.epoch + 1, 0, None
        return out

    def state_dict(self) -> dict:
        return {"num_windows": self.num_windows, "seed": self.seed, "epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        self.num_windows, self.seed = state["num_windows"], state["seed"]
        self.epoch, self.cursor, self._order = state["epoch"], state["cursor"], None
