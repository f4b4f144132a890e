"""Solutions to the exercises at the end of each chapter of the guide (docs/learn/).

One module per chapter; `tests/test_guide_solutions.py` checks every answer against an
oracle (tiktoken, PyTorch, the package's own functions, or a computation by hand).
"""
