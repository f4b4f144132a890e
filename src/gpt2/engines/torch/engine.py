"""The PyTorch engine: GPUs, half precision, and a fast CPU path.

The weights live in a `gpt2.engines.torch.model.GPT2` module (`engine.model`), named
exactly as the checkpoints are, so a parameter tree loads by name. Inference calls
the module's own forward -- the one training calls -- with a KV cache
(`model(ids, cache=cache)`); what differs is chosen once, when the engine is built:
the kernel that multiplies by each weight is swapped into the module's projections
(`gpt2.engines.torch.kernels.install_kernels`), and whether PyTorch keeps its threads
during a pass. The engine takes its views of the weights when it is built: for other
weights, build another engine.

- the cache is preallocated for the whole window ([batch, n_layer, n_head,
  n_ctx, head_dim]); each step writes its keys and values in place and attends
  over a view (see `gpt2.engines.torch.attention`: the masks, and the one-token step
  in fewer tensor operations);
- everything runs under `torch.inference_mode()`;
- on the CPU, float32, bf16 and int8 products go to the NumPy engine's C kernels where they
  build (`kernel="native"`, the default there: gpt2.engines.native; the weights are packed for
  them and the module's projection weights freed, so nothing is stored twice), and PyTorch
  itself runs on one thread during a pass, so that its idle threads do not spin on the cores
  the kernels' threads work on. Without them, float32 products run through NumPy's OpenBLAS
  (`kernel="openblas"`: matrix-vector for one row, matrix-matrix for several, on views of the
  module's own (out, in) memory, faster than MKL's or oneDNN's, docs/precision.md), and
  `kernel="onednn"` (oneDNN's inner product `torch.ops.mkldnn._linear_pointwise`) or `"blas"`
  (MKL's addmm, and PyTorch's own int8 and half-precision kernels) pick another for
  everything; see `pick_kernel`. With those, the weights keep their names and (in, out) shapes
  in `engine.model`: only their memory is column-major. Without NumPy or oneDNN, the layouts
  MKL streams fastest are used (see BLAS_TRANSPOSED);
- int8 and half-precision weights with PyTorch's kernels: see `gpt2.engines.torch.precision`
  (W8A16 through `torch._weight_int8pack_mm`; float32 activations on the CPU);
- logits come back as float32 whatever the compute dtype, as a NumPy array on the host
  (the engine contract: `gpt2.engines.base`).

>>> from gpt2.params import init_params
>>> cfg = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11, n_ctx=16)
>>> engine = TorchEngine(cfg, init_params(cfg, seed=0), device="cpu")
>>> cache = engine.new_cache()
>>> tuple(engine.forward([1, 2, 3], cache).shape), len(cache)
((11,), 3)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from ...config import Config
from ...errors import Gpt2Error
from ...params import validate_params
from ...quantized_tensor import QuantizedTensor
from ...tensor import Tensor
from ..base import check_rows
from ..plan import EnginePlan, plan_engine
from .attention import KVCache
from .device import HostRecorder, host_array, pick_device
from .kernels import PROJECTION_WEIGHTS, install_kernels
from .model import GPT2, tensor_to_torch

if TYPE_CHECKING:
    import numpy as np

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class TorchEngine:
    name = "torch"

    def __init__(self, config: Config, params: Mapping[str, Tensor], plan: EnginePlan | None = None, **options: Any):
        """`plan`: from `gpt2.engines.plan_engine("torch", ...)`, or the options themselves, planned
        here. dtype: how the weights are stored and multiplied (see gpt2.engines.torch.precision); int8
        weights (gpt2.quantized_tensor, or load_engine(..., quantize="int8")) stay int8.
        kernel: float32 on the CPU: "auto" (OpenBLAS through NumPy if installed: the fastest
        single stream), "batched" (oneDNN: the fastest for many rows a step), "openblas",
        "onednn" or "blas"; see `pick_kernel`."""
        plan = plan or plan_engine("torch", **options)
        dtype, device, threads, kernel = plan.dtype, plan.device, plan.threads, plan.kernel or "auto"
        if threads is not None:  # process-wide: only when the caller asks for it
            torch.set_num_threads(threads)
        validate_params(params, config)
        self.config = config
        self.device = pick_device(device)
        self.dtype = DTYPES[dtype]
        # On the CPU the activations, norms, attention and cache are float32 whatever the weights
        # are (see precision.py); on a GPU everything runs in the weights' dtype.
        self.act_dtype = torch.float32 if self.device.type == "cpu" else self.dtype
        self.notices: list[str] = list(plan.notices)  # what the engine chose for you (the CLI prints them)
        quantized = {name: t for name, t in params.items() if isinstance(t, QuantizedTensor)}
        self.quantization = "int8" if quantized else None
        # PyTorch's CPU bf16 products round their output to bf16 (8 bits): fine inside a block, where
        # the fp32 residual stream absorbs it, not for the logits (it flipped 1.3% of the top-1 tokens
        # of a trained model). So in bf16 the tied embedding/head table is held in fp16: the same
        # values (fp16 has more mantissa), products rounded 8x more finely (see docs/precision.md).
        self.head_dtype = torch.float16 if self.device.type == "cpu" and self.dtype == torch.bfloat16 else self.dtype
        self.model = _load_module(config, params, self.device, self.dtype, self.act_dtype, self.head_dtype)
        self.kernel, notices = install_kernels(self.model, quantized, kernel, self.dtype, self.act_dtype, threads)
        self.notices += notices
        # With the C kernels or OpenBLAS doing the products, PyTorch runs on one thread during a pass
        # (decided once, here; see _one_thread).
        own_threads = self.kernel == "native" or (self.kernel == "openblas" and self.quantization is None)
        self._threads = _one_thread if self.device.type == "cpu" and own_threads else contextlib.nullcontext

    # --- the Engine contract ---------------------------------------------------------------

    @property
    def kv_bytes_per_position(self) -> int:
        """Keys and values of every layer in the activations' dtype (float32 on the CPU)."""
        return 2 * self.config.n_layer * self.config.n_embd * self.act_dtype.itemsize

    def details(self) -> list[str]:
        return []

    def free_memory(self) -> int | None:
        """Free GPU memory on CUDA; None on the CPU (and MPS, which shares the host's)."""
        if self.device.type != "cuda":
            return None
        free, _ = torch.cuda.mem_get_info(self.device)
        return int(free)

    def new_cache(self) -> KVCache:
        return self.new_batch_cache(1)

    def forward(
        self, ids: Sequence[int], cache: KVCache, *, all_logits: bool = False, recorder: Any = None
    ) -> np.ndarray:
        """float32 logits [V] of the last new position (or [T, V] of every new one), a host NumPy
        array (the engine contract). `recorder`: see `gpt2.engines.recorder`."""
        if cache.batch_size != 1:
            raise Gpt2Error("forward takes a one-row cache; use forward_batch for a batch")
        return self.forward_batch([ids], cache, all_logits=all_logits, recorder=recorder)[0]

    def close(self) -> None:
        """Nothing to release: the weights are freed with the engine."""

    def new_batch_cache(self, batch_size: int) -> KVCache:
        return KVCache.empty(self.config, batch_size, self.act_dtype, self.device)

    @torch.inference_mode()
    def forward_batch(
        self, rows: Sequence[Sequence[int]], cache: KVCache, *, all_logits: bool = False, recorder: Any = None
    ) -> np.ndarray:
        """T new tokens in each of B rows (rows may hold different numbers of past
        positions) -> float32 logits [B, V] of each row's last position ([B, T, V] if all_logits),
        a host NumPy array (the engine contract). A `recorder` sees row 0, as host arrays too. The
        module's own forward, with the cache."""
        checked = check_rows(rows, cache, self.config)
        tokens = torch.tensor(checked, dtype=torch.long)  # [B, T]
        if self.device.type != "cpu":
            tokens = tokens.to(self.device, non_blocking=True)
        host_recorder = None if recorder is None else HostRecorder(recorder)
        with self._threads():
            logits, _ = self.model(tokens, cache=cache, all_logits=all_logits, recorder=host_recorder)  # [B, T', V]
        return host_array(logits if all_logits else logits[:, 0])  # the contract: float32 on the host


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """PyTorch on one thread for a forward pass whose products all go to the C kernels or OpenBLAS:
    their own threads use every core, while PyTorch's idle OpenMP threads would spin-wait on those
    same cores after each of its small operations. Left to both, two threads on two cores decoded
    6 tokens/s instead of 80 (docs/precision.md). The thread count is PyTorch's process-wide
    setting, so it is given back when the pass ends."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _load_module(
    config: Config,
    params: Mapping[str, Tensor],
    device: torch.device,
    dtype: torch.dtype,
    act: torch.dtype,
    head: torch.dtype,
) -> GPT2:
    """A `GPT2` module holding the tree's tensors, without spending time on a random init. The
    matrices read in bulk each token are stored in `dtype` (the projections) and `head` (wte),
    everything else in `act`; int8 ones hold their int8 values (the engine keeps their scales),
    as (out, in) memory."""
    with torch.device("meta"):
        model = GPT2(config)
    model.requires_grad_(False)  # an int8 tensor cannot be a parameter that wants gradients
    state = {}
    for name, t in params.items():
        if isinstance(t, QuantizedTensor):  # the values only: the engine builds its products from the tree
            q = torch.frombuffer(bytearray(memoryview(t.data).cast("B")), dtype=torch.int8).view(t.shape)
            state[name] = q.t().contiguous().t() if t.axis == 1 else q
        else:
            state[name] = tensor_to_torch(t)
    model.load_state_dict(state, strict=True, assign=True)
    bulk = {f"h.{i}.{w}" for i in range(config.n_layer) for w in PROJECTION_WEIGHTS}
    for name, tensor in model.state_dict(keep_vars=True).items():
        target = head if name == "wte.weight" else dtype if name in bulk else act
        if tensor.is_floating_point():
            tensor.data = tensor.data.to(device=device, dtype=target)
        else:
            tensor.data = tensor.data.to(device=device)
    return model.eval()
