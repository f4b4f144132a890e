"""Typed errors of the weight readers: every bad file, name or download is one of these."""

from ..errors import Gpt2Error


class WeightsError(Gpt2Error, ValueError):
    """A model could not be loaded or saved (base class of the errors below)."""

    # Set when a hub model could not be had with no network: the packaged models that would do
    # instead (a command line says how to ask for one: the flag differs from command to command).
    packaged: tuple[str, ...] = ()


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


def with_packaged(exc: WeightsError) -> WeightsError:
    """`exc` again, naming the models that ship with the package and work with no network (also
    in `packaged`, for a command line to say how it takes one). Unchanged if none ships.

    >>> error = with_packaged(ModelNotFound("gpt2 is not in the cache"))
    >>> str(error), error.packaged
    ('gpt2 is not in the cache; with no network, gpt2-shakespeare ships with the package', ('gpt2-shakespeare',))
    """
    from ..packaged import packaged_models

    names = tuple(packaged_models())
    if not names:
        return exc
    error = type(exc)(f"{exc}; with no network, {' or '.join(names)} ships with the package")
    error.packaged = names
    return error
