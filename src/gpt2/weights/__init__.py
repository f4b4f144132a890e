"""Official GPT-2 weights from every published format, with the standard library alone.

    from gpt2.weights import load_model, save_model
    config, params = load_model("gpt2")            # hub name, directory, or file
    save_model("out/gpt2", config, params)         # config.json + model.safetensors

Formats: safetensors (read and written here, memory-mapped), PyTorch `.bin`
(through torch.load(weights_only=True) only), and OpenAI's TensorFlow
checkpoint (parsed here, no TensorFlow). See docs/weights.md.
"""

from ..quantized_tensor import QuantizedTensor  # the value type lives beside gpt2.tensor; kept here for old imports
from .errors import (
    DownloadError,
    HubUnreachable,
    ModelNotFound,
    SafetensorsError,
    TFCheckpointError,
    TorchBinError,
    WeightsError,
)
from .hub import HubSettings, download_model
from .load import (
    LoadedModel,
    ModelFiles,
    load_files,
    load_model,
    open_model,
    read_model_files,
    resolve_model,
    save_model,
)
from .safetensors import read_safetensors, write_safetensors

__all__ = [
    "DownloadError",
    "HubUnreachable",
    "HubSettings",
    "LoadedModel",
    "ModelFiles",
    "ModelNotFound",
    "QuantizedTensor",
    "SafetensorsError",
    "TFCheckpointError",
    "TorchBinError",
    "WeightsError",
    "download_model",
    "load_files",
    "load_model",
    "open_model",
    "read_model_files",
    "read_safetensors",
    "resolve_model",
    "save_model",
    "write_safetensors",
]
