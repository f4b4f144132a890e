"""`load_model` and `save_model`: any GPT-2 checkpoint in, our parameter tree out.

    load_model("gpt2")                       the hub (downloaded once into the cache)
    load_model("path/to/hf_dir")             config.json + model.safetensors | pytorch_model.bin
    load_model("path/to/openai/124M")        OpenAI's TensorFlow checkpoint + hparams.json
    load_model("path/to/model.safetensors")  a single file (config.json beside it, or inferred)

Tensors keep the dtype they are stored in; engines convert once when they load.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import atomic_write_bytes
from ..config import END_OF_TEXT, Config, show_value
from ..errors import ConfigError, ParamError
from ..packaged import packaged_model, packaged_models
from ..params import Params, param_shapes, validate_params
from ..regular_file import is_present
from ..tensor import Tensor
from . import quantized
from .errors import HubUnreachable, ModelNotFound, TFCheckpointError, WeightsError, with_packaged
from .hub import KNOWN_MODELS, DownloadProgress, HubSettings, download_model, repo_cache_dir, repo_id_for
from .names import BLOCK_NAME, from_hf_names, infer_config, tf_to_ours
from .safetensors import read_safetensors, write_safetensors
from .tf_checkpoint import find_checkpoint_prefix, read_tf_checkpoint
from .torch_bin import read_torch_bin

if TYPE_CHECKING:
    from ..tokenizer import Tokenizer

FORMATS = ("safetensors", "torch", "tf")
TORCH_SUFFIXES = (".bin", ".pt", ".pth")


@dataclass(frozen=True)
class ModelFiles:
    """Where a model's bytes are: the format, the weights (a file, or a TF bundle
    prefix like `dir/model.ckpt`), and its config file if it has one."""

    format: str
    weights: Path
    config: Path | None
    cache_dir: Path | None = None  # the hub cache folder it came from (None: the user's own files)

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
    if is_present(f"{path}.index"):  # a TF bundle prefix such as dir/model.ckpt (the reader checks the file)
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
    except (ModelNotFound, HubUnreachable) as exc:  # offline: name what works without a network
        if (isinstance(exc, ModelNotFound) and not settings.offline) or not packaged_models():
            raise
        raise with_packaged(exc) from None
    files = _resolve_directory(snapshot)
    return ModelFiles(files.format, files.weights, files.config, repo_cache_dir(settings, repo_id))


def _beside(path: Path, name: str) -> Path | None:
    """The config next to the weights; present means used (a FIFO or a dangling link named
    config.json is an error when it is read, never silently replaced by a guess)."""
    candidate = path.parent / name
    return candidate if is_present(candidate) else None


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
    # Present, not is_file(): a FIFO or a dangling symlink (a hub snapshot whose blob was
    # deleted) named model.safetensors is reported as what it is when it is read.
    config = directory / "config.json"
    config_or_none = config if is_present(config) else None
    if is_present(directory / "model.safetensors"):
        return ModelFiles("safetensors", directory / "model.safetensors", config_or_none)
    if is_present(directory / "pytorch_model.bin"):
        return ModelFiles("torch", directory / "pytorch_model.bin", config_or_none)
    if is_present(directory / "checkpoint") or any(directory.glob("*.index")):
        prefix = find_checkpoint_prefix(directory)
        hparams = directory / "hparams.json"
        return ModelFiles("tf", prefix, hparams if is_present(hparams) else None)
    if (directory / "model.safetensors.index.json").is_file():
        raise WeightsError(f"{directory}: sharded safetensors checkpoints are not supported")
    raise ModelNotFound(
        f"{directory}: no model.safetensors, pytorch_model.bin or TensorFlow checkpoint "
        "(checkpoint + *.index) in this directory"
    )


@dataclass(frozen=True)
class LoadedModel:
    """A loaded model and where it came from, including what was not in its files."""

    config: Config
    params: Params
    files: ModelFiles
    # True when no config file came with the weights and no n_head was given: the head
    # count was guessed from the width (see names.infer_config). A wrong guess runs
    # without error and gives wrong output, so whoever shows results should say so.
    n_head_guessed: bool = False

    @property
    def guess_warning(self) -> str | None:
        """What to tell the user about a guessed head count, or None."""
        if not self.n_head_guessed:
            return None
        c = self.config
        return (
            f"{self.files.weights} has no config file beside it, so n_head={c.n_head} is a guess from "
            f"n_embd={c.n_embd} (a wrong head count gives wrong output, without any error)"
        )


def load_model(
    name_or_path: str | Path,
    *,
    hub: HubSettings | None = None,
    progress: DownloadProgress | None = None,
    verify_crc: bool | None = None,
    n_head: int | None = None,
) -> tuple[Config, Params]:
    """A model's config and parameter tree, checked against each other.

    The config comes from config.json (or hparams.json), else from the tensor shapes
    (see :func:`gpt2.weights.names.infer_config`); then `n_head` sets the head count the
    shapes cannot show (:func:`open_model` says whether it was guessed). `verify_crc`
    applies to TensorFlow checkpoints (None: check when the bundle is small; see tf_checkpoint)."""
    loaded = open_model(name_or_path, hub=hub, progress=progress, verify_crc=verify_crc, n_head=n_head)
    return loaded.config, loaded.params


def open_model(
    name_or_path: str | Path,
    *,
    hub: HubSettings | None = None,
    progress: DownloadProgress | None = None,
    verify_crc: bool | None = None,
    n_head: int | None = None,
) -> LoadedModel:
    """:func:`load_model`, returning the files and whether the head count was guessed too."""
    files = resolve_model(name_or_path, hub=hub, progress=progress)
    return read_model_files(files, verify_crc=verify_crc, n_head=n_head)


def load_files(files: ModelFiles, *, verify_crc: bool | None = None) -> tuple[Config, Params]:
    loaded = read_model_files(files, verify_crc=verify_crc)
    return loaded.config, loaded.params


def read_model_files(files: ModelFiles, *, verify_crc: bool | None = None, n_head: int | None = None) -> LoadedModel:
    """Load `files`; a model from the hub cache that fails to load names the folder to delete."""
    try:
        return _read(files, verify_crc, n_head)
    except (WeightsError, ConfigError, ParamError) as exc:
        if files.cache_dir is None:
            raise
        raise type(exc)(
            f"{exc} -- the copy in the hub cache is damaged: delete {files.cache_dir} "
            "and run again to download it afresh"
        ) from None


def _read(files: ModelFiles, verify_crc: bool | None, n_head: int | None) -> LoadedModel:
    where = str(files.weights)
    if n_head is not None and (isinstance(n_head, bool) or not isinstance(n_head, int) or n_head < 1):
        raise ConfigError(f"n_head must be a positive integer, got {show_value(n_head)}")
    if files.format == "tf":
        params = _tf_params(read_tf_checkpoint(files.weights, verify_crc), where)
    elif files.format == "torch":
        params = from_hf_names(read_torch_bin(files.weights), where)
    else:  # int8 weights are paired with their scales first (see gpt2.weights.quantized)
        params = from_hf_names(quantized.unpack(read_safetensors(files.weights)[0], where), where)
    guessed = False
    if files.config is not None:
        config = Config.from_json_file(files.config)
        if n_head is not None and n_head != config.n_head:
            raise ConfigError(f"n_head={n_head} contradicts {files.config}, which says n_head={config.n_head}")
    else:
        config = infer_config(params, where, n_head=n_head)
        guessed = n_head is None
    _check_against_tensors(config, params, where)
    try:
        validate_params(params, config)
    except ParamError as exc:
        message = str(exc)  # tensor names come from the file: keep a forged 50 MB name out of the message
        raise ParamError(f"{where}: {message if len(message) <= 300 else message[:299] + '…'}") from None
    # Checkpoint order, whatever order the file had.
    ordered = {name: params[name] for name in param_shapes(config)}
    return LoadedModel(config, ordered, files, guessed)


def _check_against_tensors(config: Config, params: Mapping[str, Tensor], where: str) -> None:
    """The config's depth against the blocks the file holds, before anything is built from
    the config's sizes: a config.json claiming a billion layers must not make us list a
    billion layers' tensor names to find that the file has two."""
    blocks = {int(m.group(1)) for m in map(BLOCK_NAME.match, params) if m}
    if config.n_layer > (max(blocks) + 1 if blocks else 0):  # (fewer: validate_params names what is missing)
        held = f"{len(blocks)} (h.{min(blocks)} to h.{max(blocks)})" if blocks else "none"
        raise ParamError(f"{where}: the config says n_layer={config.n_layer}, but the weights hold blocks: {held}")


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
    tokenizer: Tokenizer | None = None,
    metadata: Mapping[str, str] | None = None,
    chat_template: str | None = None,
) -> Path:
    """Write a complete Hugging Face model directory, each file atomically:

        config.json + model.safetensors      the model (our names, checkpoint order)
        vocab.json, merges.txt,              its tokenizer (GPT2Tokenizer)
        tokenizer_config.json
        generation_config.json               <|endoftext|> as its bos and eos token

    so that `transformers.pipeline("text-generation", model=directory)` and
    `AutoTokenizer.from_pretrained(directory)` work offline (unless it holds int8 weights:
    those are written as gpt2.weights.quantized lays them out, which only this project reads).
    `tokenizer` None means GPT-2's, written when the model's vocabulary holds it; a model
    whose vocabulary is smaller gets no tokenizer files (none would fit it). `metadata` joins
    the safetensors header's (training records its step there); `chat_template` (Jinja) goes into
    tokenizer_config.json, where transformers, `gpt2 serve` and `gpt2 chat` look for it."""
    validate_params(params, config)
    if not str(directory).strip():  # Path("") is ".": an unset shell variable must not write here
        raise WeightsError("the output directory name is empty")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise WeightsError(f"{directory} exists and is not a directory")
    if tokenizer is None and config.vocab_size >= END_OF_TEXT + 1:
        from ..tokenizer import Tokenizer

        tokenizer = Tokenizer.gpt2()
    if tokenizer is not None and tokenizer.n_vocab > config.vocab_size:
        raise WeightsError(
            f"the tokenizer has {tokenizer.n_vocab} tokens but the model's vocabulary only {config.vocab_size}"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
        ordered, packed = quantized.pack({name: params[name] for name in param_shapes(config)})
        header = {"format": "pt", **packed, **(metadata or {})}
        write_safetensors(directory / "model.safetensors", ordered, header, progress)
        text = json.dumps(config.to_hf_dict(), indent=2) + "\n"
        atomic_write_bytes(directory / "config.json", text.encode("utf-8"))
        if tokenizer is not None:
            files = hf_tokenizer_files(tokenizer, config.n_ctx)
            if chat_template is not None:
                from ..tokenizer.writers import tokenizer_config_bytes

                files = {
                    **files,
                    "tokenizer_config.json": tokenizer_config_bytes(
                        model_max_length=config.n_ctx, chat_template=chat_template
                    ),
                }
            for name, data in files.items():
                atomic_write_bytes(directory / name, data)
        eot = tokenizer.eot_token if tokenizer is not None else None
        generation = {"bos_token_id": eot, "eos_token_id": eot} if eot is not None else {}
        atomic_write_bytes(directory / "generation_config.json", (json.dumps(generation, indent=2) + "\n").encode())
    except OSError as exc:
        raise WeightsError(f"cannot write {directory}: {exc.strerror or exc}") from None
    return directory


# The tokenizer files take a second to build (the merges are derived from the ranks); a training
# run saves every few hundred steps, so each tokenizer's are built once per process. The entries
# hold the tokenizer itself, so that a tokenizer is never mistaken for a later one at its address.
_TOKENIZER_FILES: list[tuple[Tokenizer, int, dict[str, bytes]]] = []


def hf_tokenizer_files(tokenizer: Tokenizer, model_max_length: int) -> dict[str, bytes]:
    """vocab.json, merges.txt and tokenizer_config.json of a tokenizer, by file name."""
    from ..tokenizer.writers import hf_tokenizer_files as build

    for known, length, files in _TOKENIZER_FILES:
        if known is tokenizer and length == model_max_length:
            return files
    files = build(tokenizer, model_max_length=model_max_length)
    del _TOKENIZER_FILES[:-3]  # a few at most
    _TOKENIZER_FILES.append((tokenizer, model_max_length, files))
    return files
