"""The explorer: one model, its tokenizer and engines, answering the API's questions.

`Explorer` is the library behind `gpt2 explore` and its JSON API (`gpt2.explore.api`):
each method takes a checked request (`gpt2.explore.requests`) and returns the JSON-ready
answer documented in docs/explorer.md. Engines are built when first asked for (the
three-engines view needs all of them) and each is used by one request at a time (an
engine's buffers and caches are not shared between threads), through
`run_on_engine(name, work)`: by default under that engine's own lock, so that a long
pass on one engine does not hold up another; a server that shares an engine with
other work replaces it (`gpt2 explore` runs the default engine's passes on the
server's scheduler thread).

>>> from gpt2.config import Config
>>> from gpt2.params import init_params
>>> from gpt2.explore.requests import parse_trace
>>> cfg = Config(n_layer=2, n_embd=8, n_head=2, n_ctx=32)   # GPT-2's vocabulary, tiny elsewhere
>>> explorer = Explorer(cfg, init_params(cfg, seed=0), engine="pure")
>>> answer = explorer.trace(parse_trace({"text": "Hello world", "attention": "nested"}))
>>> [t["text"] for t in answer["tokens"]], answer["attention"]["shape"]
(['Hello', ' world'], [2, 2, 2, 2])
>>> len(answer["logit_lens"]["cells"]), answer["computed_by"]["attention"]
(2, 'gpt2.engines.pure.engine.PureEngine.attend')
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..config import Config
from ..engines import ENGINES, available_engines, default_engine, load_engine, require_engine
from ..engines.base import Engine
from ..engines.numpy_engine import tensor_to_numpy
from ..generation.sampling import Sampler
from ..tensor import Tensor
from ..tokenizer import Tokenizer, TokenizerError
from .bpe_steps import MAX_BPE_CHARS, explain_text
from .compare import compare_traces
from .embeddings import EmbeddingTable, nearest_neighbours, position_similarity
from .errors import ExploreError
from .lens import LensWeights
from .requests import (
    DEFAULT_SAMPLING,
    MAX_TEXT_CHARS,
    MAX_TOKENS,
    CompareRequest,
    Input,
    NeighboursRequest,
    PositionsRequest,
    StepRequest,
    TraceRequest,
)
from .sources import SOURCES, computed_by, source_of
from .trace import Trace, next_token_json, run_trace, trace_json
from .work import check_cancelled

__all__ = ["Explorer", "API_VERSION"]

API_VERSION = 1
LOGITS_CACHE = 32  # last-position logits kept, so that moving a slider costs no forward pass


class Explorer:
    """A model to explore. `engine`: the default engine's name (None: the fastest installed)
    or an engine already built over these params; `engine_options` apply to the default one."""

    def __init__(
        self,
        config: Config,
        params: Mapping[str, Tensor],
        tokenizer: Tokenizer | None = None,
        *,
        name: str = "model",
        engine: str | Engine | None = None,
        engine_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.params = params
        self.tokenizer = tokenizer or Tokenizer.gpt2()
        self.name = name
        self._engines: dict[str, Engine] = {}
        if engine is None or isinstance(engine, str):
            self.default_engine = require_engine(engine or default_engine()).name
        else:
            self.default_engine = engine.name
            self._engines[engine.name] = engine
        self._engine_options = dict(engine_options or {})
        self._lock = threading.RLock()  # guards the tables below (engines, locks, caches)
        self._engine_locks: dict[str, threading.Lock] = {}
        self.run_on_engine: Callable[[str, Callable[[Engine], Any]], Any] = self.run_locked
        self._logits: OrderedDict[tuple[str, tuple[int, ...]], np.ndarray] = OrderedDict()
        self._pieces: dict[int, dict[str, Any]] = {}
        self.lens = LensWeights.from_params(params, config.layer_norm_epsilon)
        self.embeddings = EmbeddingTable(self.lens.wte)  # wte, shared with the lens
        self._wpe = tensor_to_numpy(params["wpe.weight"])  # [n_ctx, C]
        self.max_tokens = min(MAX_TOKENS, config.n_ctx)

    # --- engines ------------------------------------------------------------------------------

    def engine(self, name: str | None = None) -> Engine:
        """The engine `name` (None: the default), built on first use."""
        name = name or self.default_engine
        with self._lock:
            if name not in self._engines:
                spec = require_engine(name)  # unknown or not installed: a clear error
                options = dict(self._engine_options) if name == self.default_engine else {}
                if spec.name == "numpy":  # the code the page shows is the code that runs: NumPy's, not C's
                    options.setdefault("native", False)
                self._engines[name] = load_engine(spec.name, self.config, self.params, **options)
            return self._engines[name]

    def run_locked(self, name: str, work: Callable[[Engine], Any]) -> Any:
        """`work(engine)` on the engine `name`, under its lock: one pass at a time on each engine."""
        engine = self.engine(name)
        with self._lock:
            lock = self._engine_locks.setdefault(engine.name, threading.Lock())
        with lock:
            return work(engine)

    def close(self) -> None:
        """Release every engine built (the pure engine's worker processes)."""
        with self._lock:
            engines, self._engines = dict(self._engines), {}
            locks = dict(self._engine_locks)
        for name, engine in engines.items():
            with locks.get(name) or threading.Lock():  # not in the middle of a pass
                engine.close()

    # --- the sequence -------------------------------------------------------------------------

    def ids(self, given: Input) -> list[int]:
        """The sequence's token ids, checked against the vocabulary and the explorer's limit."""
        if given.text is not None:
            try:
                ids = self.tokenizer.encode(given.text, allowed_special="all")
            except TokenizerError as exc:
                raise ExploreError(str(exc)) from None
        else:
            ids = list(given.ids or ())
        if not ids:
            raise ExploreError("the sequence is empty")
        if len(ids) > self.max_tokens:
            raise ExploreError(f"{len(ids)} tokens is too long: a trace covers at most {self.max_tokens}")
        for t in ids:
            if not 0 <= t < self.config.vocab_size:
                raise ExploreError(f"token id {t} is outside the vocabulary [0, {self.config.vocab_size})")
        return ids

    def token(self, token_id: int) -> dict[str, Any]:
        """{"id", "text", "bytes"} of one token; text shows bytes that are not whole characters as \\x escapes."""
        piece = self._pieces.get(token_id)
        if piece is None:
            try:
                data = self.tokenizer.decode_single_token_bytes(token_id)
                text = data.decode("utf-8", errors="backslashreplace")
            except TokenizerError:  # a model whose vocabulary is larger than its tokenizer's
                data, text = b"", f"<{token_id}>"
            piece = self._pieces[token_id] = {"id": token_id, "text": text, "bytes": list(data)}
        return dict(piece)

    # --- the API's answers --------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        c = self.config
        return {
            "api_version": API_VERSION,
            "model": {
                "name": self.name,
                "n_layer": c.n_layer,
                "n_head": c.n_head,
                "n_embd": c.n_embd,
                "n_ctx": c.n_ctx,
                "vocab_size": c.vocab_size,
                "parameters": c.num_parameters(),
            },
            "engines": {
                "default": self.default_engine,
                "installed": available_engines(),
                "loaded": list(self._engines),
            },
            "limits": {"max_tokens": self.max_tokens, "max_text_chars": MAX_TEXT_CHARS, "max_bpe_chars": MAX_BPE_CHARS},
            "defaults": {
                "temperature": DEFAULT_SAMPLING.temperature,
                "top_k": DEFAULT_SAMPLING.top_k,
                "top_p": DEFAULT_SAMPLING.top_p,
            },
            "sources": list(SOURCES),
            "computed_by": computed_by(self.default_engine),
        }

    def trace(self, request: TraceRequest) -> dict[str, Any]:
        """POST /api/trace."""
        start = time.perf_counter()
        traced = self._run(self.ids(request.input), request.engine)
        out = trace_json(
            traced,
            self.lens,
            self.token,
            sampling=request.sampling,
            top=request.top,
            lens_top=request.lens_top,
            attention=request.attention,
        )
        out["timings_ms"]["total"] = round(1e3 * (time.perf_counter() - start), 2)
        return {"model": self.name, **out}

    def next_token(self, request: TraceRequest) -> dict[str, Any]:
        """POST /api/next: only the next-token distribution (no forward pass if the sequence is recent)."""
        ids = self.ids(request.input)
        name = self.engine(request.engine).name
        logits = self._logits.get((name, tuple(ids)))
        if logits is None:
            logits = self._run(ids, name).logits[-1]
        out = next_token_json(logits, request.sampling, self.token, request.top)
        return {"engine": name, "computed_by": computed_by(name)["next_token"], **out}

    def step(self, request: StepRequest) -> dict[str, Any]:
        """POST /api/step: append the chosen token, or sample one as `gpt2 generate --seed` would."""
        trace = request.trace
        ids = self.ids(trace.input)
        if len(ids) >= self.max_tokens:
            raise ExploreError(f"the sequence is full: a trace covers at most {self.max_tokens} tokens")
        name = self.engine(trace.engine).name
        seed, draw = request.seed, request.draw
        if request.token is not None:
            if not 0 <= request.token < self.config.vocab_size:
                raise ExploreError(f"token id {request.token} is outside the vocabulary [0, {self.config.vocab_size})")
            token = request.token
        else:
            logits = self._logits.get((name, tuple(ids)))
            if logits is None:
                logits = self._run(ids, name).logits[-1]
            sampler = Sampler(trace.sampling, seed=seed)
            seed = sampler.seed
            for _ in range(draw):  # resume the seed's stream where the previous step left it
                sampler.rng.random()
            token = sampler.sample(logits)
            draw += 0 if trace.sampling.greedy else 1  # a greedy step draws nothing
        new_ids = [*ids, token]
        out: dict[str, Any] = {
            "ids": new_ids,
            "token": self.token(token),
            "chosen": request.token is not None,
            "seed": seed,
            "draw": draw,
            "computed_by": computed_by(name)["step"],
        }
        if request.include_trace:
            out["trace"] = self.trace(
                TraceRequest(
                    Input(ids=tuple(new_ids)), name, trace.sampling, trace.top, trace.lens_top, trace.attention
                )
            )
        return out

    def neighbours(self, request: NeighboursRequest) -> dict[str, Any]:
        """POST /api/embeddings/neighbours: a token's nearest neighbours in wte by cosine."""
        if request.id is not None:
            token_id = request.id
            if token_id >= self.config.vocab_size:
                raise ExploreError(f"token id {token_id} is outside the vocabulary [0, {self.config.vocab_size})")
        else:
            ids = self.tokenizer.encode(request.text or "", allowed_special="all")
            if len(ids) != 1:
                pieces = [self.token(i)["text"] for i in ids]
                raise ExploreError(f"{request.text!r} is {len(ids)} tokens ({pieces}); give a piece that is one token")
            token_id = ids[0]
        found = nearest_neighbours(self.embeddings, token_id, request.k)
        return {
            "token": self._short(token_id),
            "neighbours": [{**self._short(i), "cosine": round(c, 6)} for i, c in found],
            "computed_by": computed_by(self.default_engine)["neighbours"],
        }

    def positions(self, request: PositionsRequest) -> dict[str, Any]:
        """POST /api/embeddings/positions: cosine similarity between position embeddings."""
        count = min(request.count, (self.config.n_ctx - 1) // request.stride + 1)
        similarity = position_similarity(self._wpe, count, request.stride)
        return {
            "positions": [i * request.stride for i in range(count)],
            "similarity": similarity.round(4).tolist(),
            "computed_by": computed_by(self.default_engine)["positions"],
        }

    def bpe(self, text: str) -> dict[str, Any]:
        """POST /api/bpe: the tokenizer's work on a word, merge by merge."""
        return {**explain_text(self.tokenizer, text), "computed_by": computed_by(self.default_engine)["merges"]}

    def compare(self, request: CompareRequest) -> dict[str, Any]:
        """POST /api/compare: the same trace from several engines, and where they differ most."""
        ids = self.ids(request.input)
        names = list(request.engines or (n for n, spec in ENGINES.items() if spec.installed))  # pure first
        traces: list[Trace] = []
        loads: dict[str, float] = {}
        for name in names:
            start = time.perf_counter()
            self.engine(name)
            loads[name] = 1e3 * (time.perf_counter() - start)
            traces.append(self._run(ids, name, all_logits=True))
        out = compare_traces(traces)
        for entry in out["engines"]:
            entry["load_ms"] = round(loads[entry["name"]], 2)
            entry["next_token"] = self._short(entry["next_token"])
        return {"tokens": [self.token(i) for i in ids], **out, "computed_by": computed_by(names[0])["compare"]}

    def source(self, name: str) -> dict[str, Any]:
        """GET /api/source?name=...: the source of one of the functions the explorer names."""
        return source_of(name)

    # --- the work -----------------------------------------------------------------------------

    def _run(self, ids: list[int], engine: str | None, *, all_logits: bool = False) -> Trace:
        check_cancelled()  # the client of a long request (a comparison) may have gone meanwhile
        name = self.engine(engine).name
        traced: Trace = self.run_on_engine(name, lambda e: run_trace(e, ids, all_logits=all_logits))
        with self._lock:
            key = (traced.engine, tuple(ids))
            self._logits[key] = traced.logits[-1].copy()
            self._logits.move_to_end(key)
            while len(self._logits) > LOGITS_CACHE:
                self._logits.popitem(last=False)
        return traced

    def _short(self, token_id: int) -> dict[str, Any]:
        t = self.token(token_id)
        return {"id": t["id"], "text": t["text"]}
