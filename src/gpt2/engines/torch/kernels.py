"""Which kernel multiplies the PyTorch engine's weights on the CPU, and the layouts they read.

    native    the NumPy engine's C kernels (gpt2.engines.native): float32, bf16 and int8, the
              weights packed for them; PyTorch on one thread meanwhile
    openblas  float32 through NumPy's OpenBLAS, on views of the module's (out, in) memory
    onednn    oneDNN's inner product (torch.ops.mkldnn._linear_pointwise)
    blas      MKL's addmm, and PyTorch's own half-precision and int8 kernels
    batched   the best for many rows a step (a server): native, else oneDNN where it works
    auto      native, else openblas, else onednn (2+ threads), else blas

Each is used only where it gives the right answer on a small product; asking for one that
cannot run is an error. The measurements behind the choices are in docs/precision.md.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import torch

from ...errors import Gpt2Error, install_hint
from ...params import PROJECTIONS
from ...quantized_tensor import QuantizedTensor
from ..plan import KERNELS
from .model import GPT2, Conv1D
from .precision import (
    Projection,
    dense_projection,
    embedding_rows,
    int8_kernel,
    int8_projection,
    int8_scale,
    native_half,
    native_projection,
)

__all__ = [
    "install_kernels",
    "KERNELS",
    "BLAS_TRANSPOSED",
    "PROJECTION_WEIGHTS",
    "drop_weight",
    "native_kernels",
    "numpy_gemv",
    "onednn_linear",
    "pick_kernel",
    "transpose_storage",
    "working_onednn",
]

# "native": the NumPy engine's C kernels (gpt2.engines.native) for float32, bf16 and int8 weights
# on the CPU, PyTorch on one thread meanwhile; "openblas": float32 products through NumPy's
# OpenBLAS, likewise; "onednn": oneDNN's inner product; "blas": MKL's addmm (and PyTorch's own
# half-precision and int8 kernels); "batched": the best for many rows a step (a server): oneDNN
# where it works. See pick_kernel.
PROJECTION_WEIGHTS = tuple(name + ".weight" for name, _, _ in PROJECTIONS)

# Per-token times of the 124M model's matrices at batch 1 on a 2-core x86 machine
# (12 layers each; ms, best of 21): (in, out) = the checkpoint layout with addmm,
# (out, in) = column-major memory with addmm, oneDNN = _linear_pointwise on (out, in).
#
#                     c_attn  attn.c_proj  c_fc  mlp.c_proj  head (wte)
#     (in, out)        4.9       1.8        5.3     7.3       6.1 ([d, V])
#     (out, in)        6.8       2.3        9.7     6.6      13.7 ([V, d])
#     oneDNN           3.6       1.4        4.3     4.2       5.1 ([V, d])
#
# So: oneDNN where it is available (CPU, float32), all projections column-major and the
# embedding table as stored. Otherwise on the CPU, BLAS_TRANSPOSED column-major (a head
# that is [d, V]-contiguous, read by the embedding through a transposed view).
BLAS_TRANSPOSED = ("wte.weight", "mlp.c_proj.weight")


def numpy_gemv() -> Any:
    """NumPy's matmul if NumPy is installed and multiplies a small matrix right, else None."""
    try:
        import numpy as np
    except ImportError:
        return None
    w, x = torch.linspace(-3, 2, 80).cos().view(5, 16), torch.linspace(-1, 1, 16)
    out = torch.empty(5)
    np.matmul(w.numpy(), x.numpy(), out=out.numpy())
    return np.matmul if torch.allclose(out, w @ x, atol=1e-5) else None


def onednn_linear() -> Any:
    """oneDNN's inner product y = x @ w.T + b (w [out, in]), or None if this PyTorch lacks it."""
    try:
        return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


def native_kernels(threads: int | None) -> Any:
    """The C kernels (gpt2.engines.native), or None where they cannot be built or NumPy is missing."""
    try:
        from ..native.products import Kernels, NativeUnavailable
    except ImportError:  # no NumPy
        return None
    try:
        return Kernels.load(threads)
    except NativeUnavailable:
        return None


def drop_weight(module: torch.nn.Module) -> None:
    """Free a projection's weight (the C kernels hold a packed copy): an empty tensor in its place,
    so that the engine does not keep the model twice."""
    dtype = module.get_parameter("weight").dtype
    module.weight = torch.nn.Parameter(torch.empty(0, dtype=dtype), requires_grad=False)


def pick_kernel(kernel: str, device: torch.device, dtype: torch.dtype, threads: int | None = None) -> str:
    """ "native", "openblas", "onednn" or "blas" (see KERNELS). "auto" and "batched" take the C
    kernels on the CPU for float32 and bf16 weights where they build (gpt2.engines.native: NumPy
    and a C compiler). Without them, "batched" takes oneDNN where it works, else what "auto"
    takes: OpenBLAS through NumPy on
    the CPU in float32 when NumPy is installed (its matrix-vector product streams the weights
    faster than MKL's or oneDNN's: measured in docs/precision.md), else oneDNN with more than one
    thread (its gain comes from using every core; on one thread MKL's matrix-vector product is
    faster), else MKL. Each is used only if it gives the right answer on a small product; asking
    for one that cannot run is an error."""
    cpu32 = device.type == "cpu" and dtype == torch.float32
    native_dtype = device.type == "cpu" and dtype in (torch.float32, torch.bfloat16)
    if kernel == "native":
        if not native_dtype:
            raise Gpt2Error("the native kernel needs the cpu device and float32 or bfloat16 weights")
        if native_kernels(threads) is None:
            raise Gpt2Error("the native kernel needs NumPy and a C compiler (gcc or clang)")
        return kernel
    if kernel in ("auto", "batched") and native_dtype and native_kernels(threads) is not None:
        return "native"  # many rows share each weight they load too: 1.4x oneDNN's 8-stream throughput
    if kernel == "batched":
        # Many rows a step (a server's continuous batch): OpenBLAS's product of a few rows by a
        # large matrix costs ~3x its one-row product, oneDNN's ~1.5x (docs/server.md), and one
        # thread pool serves every product, so none spins on another's cores.
        kernel = "onednn" if cpu32 and working_onednn() else "auto"
    if kernel == "auto":
        if cpu32 and numpy_gemv() is not None:
            return "openblas"
        kernel = "onednn" if cpu32 and torch.get_num_threads() > 1 and working_onednn() else "blas"
    if kernel == "openblas" and not (cpu32 and numpy_gemv() is not None):
        raise Gpt2Error("the openblas kernel needs NumPy, the cpu device and float32")
    if kernel == "onednn" and not (cpu32 and working_onednn()):
        raise Gpt2Error("the onednn kernel needs PyTorch with oneDNN, the cpu device and float32")
    return kernel


def working_onednn() -> bool:
    op = onednn_linear()
    if op is None or not torch.backends.mkldnn.is_available():
        return False
    try:
        # fixed values: drawing random ones would move torch's global generator
        x, w = torch.linspace(-1, 1, 48).view(3, 16), torch.linspace(-3, 2, 80).cos().view(5, 16)
        b = torch.linspace(0, 1, 5)
        return bool(torch.allclose(op(x, w, b, "none", [], ""), torch.addmm(b, x, w.t()), atol=1e-4))
    except RuntimeError:
        return False


def transpose_storage(model: GPT2, suffixes: tuple[str, ...]) -> None:
    """Give the named parameters column-major storage: `p.t().contiguous().t()` has p's
    shape and values, so every reader (embedding lookups, addmm, state_dict) is unchanged."""
    for name, param in list(model.named_parameters()):
        # int8 values are column-major already where they need to be (see _load_module)
        if name.endswith(suffixes) and param.is_floating_point():
            owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            column_major = param.detach().t().contiguous().t()
            setattr(owner, name.rsplit(".", 1)[-1], torch.nn.Parameter(column_major, requires_grad=False))


def install_kernels(
    model: GPT2,
    quantized: Mapping[str, QuantizedTensor],
    kernel: str,
    dtype: torch.dtype,
    act: torch.dtype,
    threads: int | None,
) -> tuple[str, list[str]]:
    """Choose the kernel (see `pick_kernel`) and swap it into the module: each block's projections
    (`Conv1D.project`), the tied head (`model.head`) and, for an int8 or half-precision table, the
    embedding lookup (`model.embed`); the weights are laid out as that kernel reads them. The
    module's forward then runs on it unchanged. `quantized`: the tree's int8 tensors (the module
    holds their values, (out, in) in memory). Returns the kernel and the notices for the user."""
    device = model.wte.weight.device
    notices: list[str] = []
    kernel = pick_kernel(kernel, device, dtype, threads)
    half_on_cpu = device.type == "cpu" and dtype != torch.float32
    native = native_kernels(threads) if kernel == "native" else None
    if kernel in ("onednn", "openblas") or (half_on_cpu and native is None):  # dense (out, in) matrices
        transpose_storage(model, PROJECTION_WEIGHTS)
    elif device.type == "cpu" and native is None:
        transpose_storage(model, BLAS_TRANSPOSED)
    inner = onednn_linear() if kernel == "onednn" else None
    numpy_matmul = numpy_gemv() if kernel == "openblas" else None
    if numpy_matmul is not None and threads is not None:  # OpenBLAS has its own threads
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=threads, user_api="blas")
        except ImportError:
            notices.append(f"OpenBLAS keeps its own thread count: {install_hint('numpy')} to set it")
    int8_op = None
    if quantized and native is None:
        int8_op, notice = int8_kernel(device)
        if notice:
            notices.append(notice)
    if half_on_cpu and not native_half(dtype) and native is None:
        name = str(dtype).removeprefix("torch.")
        notices.append(f"this CPU has no {name} arithmetic (AMX or AVX512 {name}): prompts are multiplied in float32")

    def projection(name: str, weight_in_out: torch.Tensor, bias: torch.Tensor | None) -> Projection:
        if native is not None:  # packed for the C kernels (a copy: the module's is freed)
            return native_projection(weight_in_out, quantized.get(name), bias, dtype, native, name)
        if name in quantized:
            return int8_projection(weight_in_out.t(), int8_scale(quantized[name], device), bias, act, int8_op)
        return dense_projection(weight_in_out, bias, act, inner, numpy_matmul)

    for i, block in enumerate(model.h):
        for name, _, _ in PROJECTIONS:
            conv = block.get_submodule(name)
            if not isinstance(conv, Conv1D):
                raise TypeError(f"{name} is a {type(conv).__name__}, not a Conv1D")
            weight, bias = conv.weight, conv.bias
            conv.project = projection(f"h.{i}.{name}.weight", weight, bias)
            if native is not None:  # packed for the C kernels: free the module's copy now
                drop_weight(conv)
    wte = model.wte.weight
    model.head = projection("wte.weight", wte.t(), None)  # the tied output projection: [d, V] as (in, out)
    table: torch.Tensor | tuple[torch.Tensor, torch.Tensor] = wte
    if "wte.weight" in quantized:
        table = (wte, int8_scale(quantized["wte.weight"], device))
    model.embed = functools.partial(embedding_rows, table, act=act)
    return kernel, notices
