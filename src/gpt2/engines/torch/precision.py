"""How the PyTorch engine multiplies by its weights, in each precision it can store them in.

Every projection (the four of each block, and the tied head) becomes a `Projection`: it holds
its weight in the dtype and memory layout its kernel reads, and maps x [N, in] to x @ W + b
[N, out] in the engine's activation dtype. Which kernel, by weight storage:

    float32    oneDNN's inner product on (out, in) weights (2+ threads), else MKL's addmm
    bfloat16   one row (decoding): a bf16 matrix-vector product, fp32 accumulation, on any CPU;
    float16    several rows (prefill): a 16-bit matrix product where the CPU has the
               instructions (bf16: AMX or AVX512-BF16; fp16: AVX512-FP16 or AMX-FP16),
               otherwise the matrix is widened to fp32 for that product (fp32 compute)
    int8       torch._weight_int8pack_mm (W8A16): int8 weights (out, in), bf16 activations,
               fp32 accumulation; the per-row scales are applied after it, in fp32. Where the
               op is missing or fails its check, the matrix is dequantized before each product
               (the engine records a notice)

On the CPU the activations, layer norms, attention and the KV cache stay float32 whatever
the weights are: at batch 1 they are a few kilobytes, and a bf16 residual stream would cost
accuracy for no speed. On a GPU everything runs in the engine's dtype.

The measurements behind each choice are in docs/precision.md.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F

from ...quantized_tensor import QuantizedTensor
from ..cpu import BF16_FLAGS, cpu_flags

# torch._weight_int8pack_mm reads its operands in blocks along the inner dimension. Measured on
# PyTorch 2.13 (AVX512), inner sizes 16, 32, 48, 64, 96 and 128 were right; 1-8, 24, 40, 56 and
# 100 gave wrong values and some crashed the process. The kernel is used only for multiples of
# 32 (GPT-2's 768 and 3072 are); other matrices are dequantized instead.
INT8_INNER_MULTIPLE = 32
FP16_FLAGS = ("avx512_fp16", "amx_fp16")

Projection = Callable[[torch.Tensor], torch.Tensor]


# --- what the CPU can do -------------------------------------------------------------------------


@functools.cache
def cpu_capabilities() -> frozenset[str]:
    """The CPU's relevant features: PyTorch's own detection (its private
    torch._C._cpu._get_cpu_capability, which also sees what the OS enabled), else /proc/cpuinfo."""
    try:
        caps = torch._C._cpu._get_cpu_capability()
        return frozenset(name for name, value in caps.items() if value is True)
    except (AttributeError, RuntimeError, TypeError):
        return frozenset(cpu_flags())


def cpu_has_bf16() -> bool:
    """AMX-BF16 or AVX512-BF16: bf16 matrix products faster than fp32 ones."""
    return any(flag in cpu_capabilities() for flag in BF16_FLAGS)


def cpu_has_fp16() -> bool:
    """AVX512-FP16 or AMX-FP16: fp16 arithmetic (F16C alone only converts)."""
    return any(flag in cpu_capabilities() for flag in FP16_FLAGS)


def native_half(dtype: torch.dtype) -> bool:
    """Whether this CPU multiplies matrices of `dtype` (bf16/fp16) in that dtype at speed."""
    return cpu_has_bf16() if dtype == torch.bfloat16 else cpu_has_fp16() if dtype == torch.float16 else True


# --- the int8 kernel ------------------------------------------------------------------------------


def int8_kernel(device: torch.device) -> tuple[Any, str | None]:
    """(torch._weight_int8pack_mm, None) if it exists here and gives the right answer on a small
    product; else (None, the notice to show). The op is private: wrapped here, checked once."""
    op = getattr(torch, "_weight_int8pack_mm", None)
    if op is None:
        return (
            None,
            "this PyTorch has no int8 matrix kernel (torch._weight_int8pack_mm): dequantizing before each product",
        )
    try:
        # fixed values: drawing random ones would move torch's global generator
        x = torch.linspace(-2, 2, 3 * 64).view(3, 64).to(device, torch.bfloat16)
        q = (torch.arange(40 * 64) % 255 - 127).view(40, 64).to(device, torch.int8)
        ones = torch.ones(40, device=device, dtype=torch.bfloat16)
        got = op(x, q, ones).float()
        want = x.float() @ q.float().t()
        ok = bool(torch.allclose(got, want, rtol=2e-2, atol=2e-2 * float(want.abs().max())))
    except (RuntimeError, NotImplementedError) as exc:
        return None, f"the int8 matrix kernel fails on {device.type} ({str(exc).splitlines()[0]}): dequantizing instead"
    if not ok:
        return None, f"the int8 matrix kernel gives wrong results on {device.type}: dequantizing before each product"
    return op, None


def dequantized(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The matrix q * scale [out, in] in `dtype`: the reference the kernel is tested against, and
    the fallback where it cannot run."""
    return q.to(dtype) * scale.to(dtype).view(-1, 1)


# --- projections ------------------------------------------------------------------------------------


def dense_projection(
    weight: torch.Tensor, bias: torch.Tensor | None, act: torch.dtype, inner: Any, numpy_matmul: Any = None
) -> Projection:
    """x @ W + b for a float weight. `weight` is (in, out) (any memory layout); `inner` is oneDNN's
    inner product (then weight.t() is read as dense (out, in)) or None for addmm; `numpy_matmul`, if
    given, is NumPy's matmul, used for every float32 product on weight.t() (dense (out, in))."""
    wdtype = weight.dtype
    if numpy_matmul is not None and wdtype == act == torch.float32 and weight.t().is_contiguous():
        return _openblas_projection(weight, bias, numpy_matmul, dense_projection(weight, bias, act, inner))
    if wdtype == act or weight.device.type != "cpu":  # the weights' own dtype throughout
        if inner is not None:
            w_out_in = weight.t()
            return lambda x: inner(x, w_out_in, bias, "none", [], "")
        if bias is None:
            return lambda x: x @ weight
        return lambda x: torch.addmm(bias, x, weight)
    # Half-precision weights, fp32 activations (the CPU): see the module docstring.
    w_out_in = weight.t()
    half_bias = bias.to(wdtype) if bias is not None else None
    native = native_half(wdtype)

    def project(x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 1:  # a matrix-vector product: ATen's own, see _aten_gemv
            with _aten_gemv():
                return F.linear(x.to(wdtype), w_out_in, half_bias).to(act)
        if native:  # hardware that has the instructions
            return F.linear(x.to(wdtype), w_out_in, half_bias).to(act)
        return F.linear(x, w_out_in.to(act), bias)  # widened for this product only

    return project


@contextlib.contextmanager
def _aten_gemv() -> Iterator[None]:
    """Route a one-row half-precision product to ATen's matrix-vector kernel (fp32 sums, read
    straight from the 16-bit weights) rather than oneDNN's matrix product, which PyTorch picks for
    bf16 whenever oneDNN is enabled: 11 vs 19 ms per 124M token on one AVX512-BF16 core
    (docs/precision.md). PyTorch offers no per-call switch, so this flips its global oneDNN flag
    for the one call (a few microseconds); another thread's half-precision product in that
    moment would take ATen's kernel too, with the same result."""
    enabled = torch._C._get_mkldnn_enabled()
    torch._C._set_mkldnn_enabled(False)
    try:
        yield
    finally:
        torch._C._set_mkldnn_enabled(enabled)


def _openblas_projection(
    weight: torch.Tensor, bias: torch.Tensor | None, matmul: Any, several_rows: Projection
) -> Projection:
    """x @ W + b through NumPy's matmul on a view of the same memory (nothing is copied): one row
    as OpenBLAS's gemv, several as its gemm, written into a fresh tensor. Inputs NumPy cannot take
    as they are (autograd, another dtype, a strided view) go to `several_rows`."""
    w_out_in = weight.t().numpy()  # [out, in], contiguous
    w_in_out = w_out_in.T  # [in, out], the same memory
    n_out = w_out_in.shape[0]

    def project(x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad or x.dtype != torch.float32 or not x.is_contiguous():
            return several_rows(x)
        y = torch.empty((x.shape[0], n_out), dtype=torch.float32)
        if x.shape[0] == 1:
            matmul(w_out_in, x.numpy()[0], out=y.numpy()[0])  # gemv
        else:
            matmul(x.numpy(), w_in_out, out=y.numpy())  # gemm
        return y if bias is None else y.add_(bias)

    return project


def int8_projection(
    q_out_in: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None, act: torch.dtype, op: Any
) -> Projection:
    """x @ (q * scale).T + b for q [out, in] int8 and fp32 scales [out]. With the kernel, the
    scales are applied after it in fp32 (exact, not rounded to bf16); without it, the matrix is
    dequantized for each product."""
    scale = scale.to(act)
    q_out_in = q_out_in.contiguous()  # the kernel reads dense rows (a no-op for the engine's layout)
    if op is None or q_out_in.shape[1] % INT8_INNER_MULTIPLE:
        return lambda x: F.linear(x, dequantized(q_out_in, scale, act), bias)
    ones = torch.ones(q_out_in.shape[0], dtype=torch.bfloat16, device=q_out_in.device)
    if bias is None:
        return lambda x: op(x.to(torch.bfloat16), q_out_in, ones).to(act).mul_(scale)
    return lambda x: torch.addcmul(bias, op(x.to(torch.bfloat16), q_out_in, ones).to(act), scale)


def native_projection(
    weight_in_out: torch.Tensor,
    quantized: QuantizedTensor | None,
    bias: torch.Tensor | None,
    dtype: torch.dtype,
    kernels: Any,
    name: str,
) -> Projection:
    """x @ W + b by the NumPy engine's C kernels (gpt2.engines.native) on the CPU: the weight
    packed once (int8 if it is quantized, else bf16 or float32 as the engine's dtype), x and the
    result handed over as NumPy views of the tensors' memory. The head's int8 products take x in
    two parts, as the NumPy engine's do (docs/precision.md)."""

    from ..native.products import PackedBf16, PackedF32, PackedInt8

    packed: Any
    if quantized is not None:
        packed = PackedInt8.of(quantized, kernels, precise=name == "wte.weight")
    else:
        w = weight_in_out.detach().t().to(torch.float32).contiguous().numpy()  # [out, in]
        packed = PackedBf16(w, kernels) if dtype == torch.bfloat16 else PackedF32(w, kernels)
    b = None if bias is None else bias.detach().to(torch.float32).contiguous().numpy()
    n_out = packed.shape[0]

    def project(x: torch.Tensor) -> torch.Tensor:
        y = torch.empty((x.shape[0], n_out), dtype=torch.float32)
        packed.product(x.detach().to(torch.float32).numpy(), y.numpy(), b)
        return y

    return project


def embedding_rows(
    wte: torch.Tensor | tuple[torch.Tensor, torch.Tensor], tokens: torch.Tensor, act: torch.dtype
) -> torch.Tensor:
    """wte[tokens] in `act`: a float table, or an int8 one (q [V, d], scale [V]) row by row."""
    if isinstance(wte, tuple):
        q, scale = wte
        return q[tokens].to(act) * scale[tokens].to(act).unsqueeze(-1)
    return wte[tokens].to(act)


def int8_scale(t: QuantizedTensor, device: torch.device) -> torch.Tensor:
    """A quantized tensor's scales as a float32 vector [out] on `device`."""
    scale = torch.frombuffer(bytearray(memoryview(t.scale.data).cast("B")), dtype=torch.float32)
    return scale.to(device)
