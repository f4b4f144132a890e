"""The number of CPU threads a run trains with: chosen once, kept on resume, held every step.

On the CPU a training run is bit for bit repeatable only at a fixed thread count. Measured
with this project's model (tiny preset, batch 8 x 256, PyTorch 2.13 with MKL): with the
same count, every gradient is identical from run to run and whatever the memory layout;
between 1 and 2 threads (or 4, 8, 16) the gradients of every layer norm's gain and bias
differ in their last bits, because PyTorch's layer-norm backward sums each thread's share
of the rows in a buffer of its own and then adds the buffers; at 3 or 6 threads MKL's
matrix products split the work differently as well, and every gradient and the logits
change. A difference in the last bit grows: after a few steps the losses differ in their
printed digits (issue 20: about 6 runs in 102 of one command ended on a second result).

The count can change between two runs of one command, or between a run and its resume,
without anyone asking: OMP_NUM_THREADS and MKL_NUM_THREADS, the CPUs a process may use
(`taskset`, a container's or a batch scheduler's cpuset), other code in the same process
that set PyTorch's count (an engine built with `threads=N`), and MKL's dynamic mode, on
by default until something calls `torch.set_num_threads`, in which MKL may use fewer
threads than asked. So the count is a training setting (`threads`, `--threads`): a new
run takes PyTorch's count when it starts, the checkpoint keeps it, `--resume` takes it
back; the trainer sets it (`torch.set_num_threads`, which also turns MKL's dynamic mode
off) when it starts and again before every step, and gives the process its own count
back when it ends.

>>> import torch
>>> before = torch.get_num_threads()
>>> with training_threads(1):
...     torch.get_num_threads()
1
>>> torch.get_num_threads() == before
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def default_threads() -> int:
    """The count a new run trains with when none is given: PyTorch's, as the process has it."""
    return torch.get_num_threads()


def resumed_threads_notice(saved: int | None, threads: int) -> str | None:
    """What to say when a resumed run trains with another count than its checkpoint's.

    >>> resumed_threads_notice(2, 2) is None and resumed_threads_notice(None, 4) is None
    True
    """
    if saved is None or saved == threads:
        return None
    return (
        f"the checkpoint was trained with {saved} thread(s), this run uses {threads} (--threads): "
        "training continues, but not bit for bit"
    )


def hold_threads(threads: int) -> None:
    """Set PyTorch's count back to `threads` if anything in the process changed it."""
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def training_threads(threads: int) -> Iterator[None]:
    """Train with `threads` threads (MKL's dynamic mode off); the old count afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)  # unconditionally: it is also what turns MKL's dynamic mode off
    try:
        yield
    finally:
        torch.set_num_threads(previous)
