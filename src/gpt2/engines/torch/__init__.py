"""The PyTorch engine and the module it shares with training (needs torch).

- `model`: GPT-2 as an `nn.Module`, named exactly as the checkpoints are (training uses it);
- `engine`: `TorchEngine`, the decoding engine (KV cache, SDPA, oneDNN on the CPU);
- `device`: `pick_device`, the one place that chooses cpu, cuda or mps.
"""
