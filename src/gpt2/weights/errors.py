"""Typed errors of the weight readers: every bad file, name or download is one of these."""

from ..errors import Gpt2Error


class WeightsError(Gpt2Error, ValueError):
    """A model could not be loaded or saved (base class of the errors below)."""


class SafetensorsError(WeightsError):
    """A `.safetensors` file breaks one of the format's promises."""


class TorchBinError(WeightsError):
    """A PyTorch `.bin` checkpoint could not be read safely (or PyTorch is missing)."""


class TFCheckpointError(WeightsError):
    """An OpenAI TensorFlow checkpoint (tensor bundle) could not be read."""


class ModelNotFound(WeightsError):
    """A name is neither a local path nor a known model, or it is not cached while offline."""


class DownloadError(WeightsError):
    """Fetching a model from the Hugging Face hub failed."""


class HubUnreachable(DownloadError):
    """Not one byte of a file arrived in any attempt: most often, no network."""
