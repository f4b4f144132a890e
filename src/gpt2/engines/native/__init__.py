"""C kernels for the NumPy engine's products (and the PyTorch engine's on a CPU): float32, bf16
and int8 weights (NumPy has no bf16 or int8 product).

    products.c    the products: float32 (AVX512), bf16 (AVX512-BF16) and W8A8 int8
                  (AVX512-VNNI), plain C where the CPU has none of them
    attention.c   causal attention over a layer's KV cache
    pool.c        the threads that share a product's rows (one that is late is not waited for)
    build.py      compiles them for this CPU the first time they are needed, cached
    products.py   the weights packed for the kernels, and the calls (ctypes)

Importing this package imports nothing but the standard library; `products` needs NumPy.
"""

from .build import NativeUnavailable

__all__ = ["NativeUnavailable"]
