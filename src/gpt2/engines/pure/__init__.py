"""GPT-2 in pure Python: the standard library only, one concept per function.

- `ops`: the math (dot product, matmul, softmax, layer norm, GELU, ...), on lists.
- `model`: the model as small functions over the parameter tree, whole sequences at once.
- `layout` and `parallel`: the same model made fast for decoding: weights as rows
  of Python floats, a KV cache, the inner products split across processes.
"""
