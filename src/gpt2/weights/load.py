"""`load_model` and `save_model`: any GPT-2 checkpoint in, our parameter tree out.

    load_model("gpt2")                       the hub (downloaded once into the cache)
    load_model("path/to/hf_dir")             config.json + model.safetensors | pytorch_model.bin
    load_model("path/to/openai/124M")        OpenAI's TensorFlow checkpoint + hparams.json
    load_model("path/to/model.safetensors")  a single file (config.json beside it, or inferred)

Tensors keep the dtype they are stored in; engines convert once when they load.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_write_bytes
from ..config import Config
from ..errors import ParamError
from ..packaged import packaged_model, packaged_models
from ..params import Params, param_shapes, validate_params
from ..tensor import Tensor
from .errors import DownloadError, ModelNotFound, TFCheckpointError, WeightsError
from .hub import KNOWN_MODELS, DownloadProgress, HubSettings, download_model, repo_id_for
from .names import from_hf_names, infer_config, tf_to_ours
from .safetensors import read_safetensors, write_safetensors
from .tf_checkpoint import find_checkpoint_prefix, read_tf_checkpoint
from .torch_bin import read_torch_bin

FORMATS = ("safetensors", "torch", "tf")
TORCH_SUFFIXES = (".bin", ".pt", ".pth")


@dataclass(frozen=True)
class ModelFiles:
    """Where a model's bytes are: the format, the weights (a file, or a TF bundle
    prefix like `dir/model.ckpt`), and its config file if it has one."""

    format: str
    weights: Path
    config: Path | None

    def size_bytes(self) -> int:
        if self.format != "tf":
            return self.weights.stat().st_size
        parent, stem = self.weights.parent, self.weights.name
        return sum(p.stat().st_size for p in parent.glob(f"{stem}.*") if p.name != f"{stem}.meta")


def resolve_model(
    name_or_path: str | Path,
    *,
    hub: HubSettings | None = None,
    progress: DownloadProgress | None = None,
) -> ModelFiles:
    """Find a model's files: a local file or directory, or a known hub name (downloaded
    into the cache if it is not there yet)."""
    if not str(name_or_path).strip():
        raise ModelNotFound(f"empty model name; give one of {', '.join(KNOWN_MODELS)}, a directory or a file")
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return _resolve_file(path)
    if path.is_dir():
        return _resolve_directory(path)
    if path.exists():  # /dev/null, a FIFO, a socket: there are no weights to map
        raise WeightsError(f"{path} is not a regular file or a directory")
    if Path(f"{path}.index").is_file():  # a TF bundle prefix such as dir/model.ckpt
        return ModelFiles("tf", path, _beside(path, "hparams.json"))
    packaged = packaged_model(str(name_or_path))
    if packaged is not None:  # ships inside the package: no hub, no network
        return _resolve_directory(packaged)
    repo_id = repo_id_for(str(name_or_path))
    if repo_id is None:
        raise ModelNotFound(
            f"{name_or_path}: no such file or directory, and not a known model name "
            f"({', '.join([*KNOWN_MODELS, *packaged_models()])})"
        )
    settings = hub or HubSettings.from_env()
    try:
        snapshot = download_model(repo_id, settings, progress)
    except (ModelNotFound, DownloadError) as exc:  # offline: name what works without a network
        if (isinstance(exc, ModelNotFound) and not settings.offline) or not packaged_models():
            raise
        shipped = " or ".join(f"--model {name}" for name in packaged_models())
        raise type(exc)(f"{exc}; with no network, {shipped} ships with the package") from None
    return _resolve_directory(snapshot)


def _beside(path: Path, name: str) -> Path | None:
    candidate = path.parent / name
    return candidate if candidate.is_file() else None


def _resolve_file(path: Path) -> ModelFiles:
    if path.name.endswith(".index"):
        prefix = path.with_name(path.name[: -len(".index")])
        return ModelFiles("tf", prefix, _beside(path, "hparams.json"))
    if path.suffix in TORCH_SUFFIXES:
        return ModelFiles("torch", path, _beside(path, "config.json"))
    if path.suffix == ".safetensors":
        return ModelFiles("safetensors", path, _beside(path, "config.json"))
    try:
        with open(path, "rb") as f:
            magic = f.read(9)
    except OSError as exc:
        raise WeightsError(f"cannot read {path}: {exc.strerror or exc}") from None
    # torch.save writes a zip (PK) or, before 1.6, a raw pickle (protocol opcode 0x80);
    # safetensors starts with an 8-byte header length and then the header's JSON object.
    if magic[:2] == b"PK" or magic[:1] == b"\x80":
        return ModelFiles("torch", path, _beside(path, "config.json"))
    if magic[8:9] == b"{":
        return ModelFiles("safetensors", path, _beside(path, "config.json"))
    raise WeightsError(
        f"{path} is not a model file (expected .safetensors, a PyTorch .bin/.pt, a TensorFlow "
        "checkpoint's .index, or a directory holding one)"
    )


def _resolve_directory(directory: Path) -> ModelFiles:
    config = directory / "config.json"
    config_or_none = config if config.is_file() else None
    if (directory / "model.safetensors").is_file():
        return ModelFiles("safetensors", directory / "model.safetensors", config_or_none)
    if (directory / "pytorch_model.bin").is_file():
        return ModelFiles("torch", directory / "pytorch_model.bin", config_or_none)
    if (directory / "checkpoint").is_file() or any(directory.glob("*.index")):
        prefix = find_checkpoint_prefix(directory)
        hparams = directory / "hparams.json"
        return ModelFiles("tf", prefix, hparams if hparams.is_file() else None)
    if (directory / "model.safetensors.index.json").is_file():
        raise WeightsError(f"{directory}: sharded safetensors checkpoints are not supported")
    raise ModelNotFound(
        f"{directory}: no model.safetensors, pytorch_model.bin or TensorFlow checkpoint "
        "(checkpoint + *.index) in this directory"
    )


def load_model(
    name_or_path: str | Path,
    *,
    hub: HubSettings | None = None,
    progress: DownloadProgress | None = None,
    verify_crc: bool | None = None,
) -> tuple[Config, Params]:
    """A model's config and parameter tree, checked against each other.

    The config comes from config.json (or hparams.json), else from the tensor shapes
    (see :func:`gpt2.weights.names.infer_config`). `verify_crc` applies to TensorFlow
    checkpoints (None: check when the bundle is small; see tf_checkpoint)."""
    files = resolve_model(name_or_path, hub=hub, progress=progress)
    return load_files(files, verify_crc=verify_crc)


def load_files(files: ModelFiles, *, verify_crc: bool | None = None) -> tuple[Config, Params]:
    where = str(files.weights)
    if files.format == "tf":
        params = _tf_params(read_tf_checkpoint(files.weights, verify_crc), where)
    elif files.format == "torch":
        params = from_hf_names(read_torch_bin(files.weights), where)
    else:
        params = from_hf_names(read_safetensors(files.weights)[0], where)
    config = Config.from_json_file(files.config) if files.config else infer_config(params, where)
    try:
        validate_params(params, config)
    except ParamError as exc:
        raise ParamError(f"{where}: {exc}") from None
    # Checkpoint order, whatever order the file had.
    return config, {name: params[name] for name in param_shapes(config)}


def _tf_params(tensors: dict[str, Tensor], where: str) -> Params:
    """OpenAI's names onto ours; the [1, in, out] convolution kernels become [in, out]."""
    params: Params = {}
    for tf_name, t in tensors.items():
        ours = tf_to_ours(tf_name)
        if ours is None:  # e.g. global_step: not part of the model
            continue
        if tf_name.endswith("/w") and len(t.shape) == 3:
            if t.shape[0] != 1:
                raise TFCheckpointError(f"{where}: {tf_name} has shape {list(t.shape)}, expected [1, in, out]")
            t = Tensor(t.shape[1:], t.dtype, t.data)
        params[ours] = t
    return params


def save_model(
    directory: str | Path,
    config: Config,
    params: Params,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write `config.json` + `model.safetensors` (our names, checkpoint order) into
    `directory`, each atomically; `transformers.GPT2LMHeadModel.from_pretrained` reads it."""
    validate_params(params, config)
    if not str(directory).strip():  # Path("") is ".": an unset shell variable must not write here
        raise WeightsError("the output directory name is empty")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise WeightsError(f"{directory} exists and is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        ordered = {name: params[name] for name in param_shapes(config)}
        write_safetensors(directory / "model.safetensors", ordered, {"format": "pt"}, progress)
        text = json.dumps(config.to_hf_dict(), indent=2) + "\n"
        atomic_write_bytes(directory / "config.json", text.encode("utf-8"))
    except OSError as exc:
        raise WeightsError(f"cannot write {directory}: {exc.strerror or exc}") from None
    return directory
