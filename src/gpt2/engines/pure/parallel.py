"""The big matrices, split by output rows across processes.

Python runs one thread of bytecode at a time, so to use more than one core the
pure engine forks worker processes. Each process holds its own slice of the
output rows of every matrix (tensor parallelism): process k of n owns rows
[k * n_out / n, (k + 1) * n_out / n). A matrix-vector product sends x to every
worker, computes the local slice meanwhile, and concatenates the answers. The
rows are built *after* the fork, each process converting only its slice, so
the weights are held once in all, not once per process.

Where `fork` does not exist (Windows) or one core is all there is, it runs in
one process: the answers are identical either way.
"""

from __future__ import annotations

import array
import gc
import multiprocessing
import os
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

from ...errors import Gpt2Error
from .layout import BEST_METHOD, RowMatrix


@dataclass(frozen=True)
class MatrixSpec:
    """A matrix to lay out: its flat weights (array('f' or 'd')), sizes and optional bias."""

    flat: memoryview[float] | array.array[float]  # the weight's values, in checkpoint order
    n_in: int
    n_out: int
    transposed: bool  # True for Conv1D (in, out) weights, False for wte (out, in)
    bias: Sequence[float] | None


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def _build(specs: Sequence[MatrixSpec], shard: int, n_shards: int, storage: str, method: str) -> list[RowMatrix]:
    out = []
    for s in specs:
        lo, hi = s.n_out * shard // n_shards, s.n_out * (shard + 1) // n_shards
        out.append(
            RowMatrix(
                s.flat, s.n_in, s.n_out, lo, hi, transposed=s.transposed, bias=s.bias, storage=storage, method=method
            )
        )
    return out


def _worker(conn, specs, shard, n_shards, storage, method) -> None:
    """Worker process: build its slice, then answer (matrix index, inputs) requests."""
    try:
        matrices = _build(specs, shard, n_shards, storage, method)
        del specs
        gc.collect()
        gc.freeze()  # nothing below creates cycles worth tracing through the weights
        conn.send("ready")
        while True:
            request = conn.recv()
            if request is None:
                break
            index, xs = request
            conn.send([matrices[index].matvec(x) for x in xs])
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        pass
    except BaseException as exc:  # report instead of dying silently
        try:
            conn.send(exc)
        except Exception:
            pass
    finally:
        conn.close()


def _shutdown(connections, processes) -> None:
    for conn in connections:
        try:
            conn.send(None)
            conn.close()
        except Exception:
            pass
    for p in processes:
        p.join(timeout=5)
        if p.is_alive():
            p.terminate()


class ShardedMatrices:
    """A list of matrices whose matvecs run split across `workers` processes (this one included)."""

    def __init__(
        self, specs: Sequence[MatrixSpec], *, workers: int = 1, storage: str = "fast", method: str = BEST_METHOD
    ) -> None:
        if workers < 1:
            raise Gpt2Error(f"workers must be >= 1, got {workers}")
        if workers > 1 and not can_fork():
            workers = 1
        self.workers = workers
        self._connections = []
        self._processes = []
        if workers > 1:
            ctx = multiprocessing.get_context("fork")
            for shard in range(1, workers):
                parent_end, child_end = ctx.Pipe()
                p = ctx.Process(
                    target=_worker,
                    args=(child_end, specs, shard, workers, storage, method),
                    daemon=True,
                    name=f"gpt2-pure-shard-{shard}",
                )
                p.start()
                child_end.close()
                self._connections.append(parent_end)
                self._processes.append(p)
            self._finalizer = weakref.finalize(self, _shutdown, self._connections, self._processes)
        self.local = _build(specs, 0, workers, storage, method)
        for conn in self._connections:
            self._receive(conn)  # "ready"

    def _receive(self, conn):
        try:
            answer = conn.recv()
        except (EOFError, OSError):
            raise Gpt2Error(
                "a pure-engine worker process died (out of memory?); try workers=1 or storage='compact'"
            ) from None
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def matvecs(self, index: int, xs: Sequence[Sequence[float]]) -> list[list[float]]:
        """Matrix `index` times every vector in xs: [n][n_in] -> [n][n_out]."""
        if not self._connections:
            m = self.local[index]
            return [m.matvec(x) for x in xs]
        payload = (index, [tuple(x) for x in xs])
        for conn in self._connections:
            conn.send(payload)
        m = self.local[index]
        outs = [m.matvec(x) for x in payload[1]]
        for conn in self._connections:
            for out, part in zip(outs, self._receive(conn)):
                out.extend(part)
        return outs

    def close(self) -> None:
        if self._connections:
            self._finalizer()
            self._connections = []
