"""C products for the NumPy engine's int8 and bf16 weights (NumPy has neither product).

    products.c    the kernels: W8A8 int8 (AVX512-VNNI) and bf16 (AVX512-BF16) products,
                  plain C where the CPU has neither
    build.py      compiles products.c for this CPU the first time it is needed, cached
    products.py   the weights packed for the kernels, and the calls (ctypes)

Importing this package imports nothing but the standard library; `products` needs NumPy.
"""

from .build import NativeUnavailable

__all__ = ["NativeUnavailable"]
