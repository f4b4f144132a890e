"""What the tests share: the data they read, GPT-2's vocabulary files, tiktoken as an oracle,
an import blocker, and the switch for the slow tests.

Everything a test reads is in the repository (`tests/data/`) or made here, so a
clone runs the whole suite on its own. `python -m pytest` runs the quick suite;
`python -m pytest --slow` (what CI runs) adds the tests marked `slow`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"

# The regular expression of GPT-2's pre-tokenizer, as tiktoken writes it.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# sha256 of the vocabulary files OpenAI released with GPT-2 (tiktoken's gpt2.tiktoken, and
# encoder.json + vocab.bpe, which Hugging Face ships as vocab.json + merges.txt).
OFFICIAL_VOCABULARY_SHA256 = {
    "gpt2.tiktoken": "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
    "encoder.json": "03087853bc70c618b66e7c7a43e787d2db4c469416beac9a483e53dad1f72f27",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}

# Modules whose absence the core must survive (see test_core_imports and blocked_imports).
OPTIONAL_PACKAGES = (
    "numpy",
    "torch",
    "matplotlib",
    "transformers",
    "tiktoken",
    "safetensors",
    "huggingface_hub",
    "tensorflow",
    "scipy",
    "pandas",
    "fastapi",
    "uvicorn",
    "threadpoolctl",
    "jinja2",  # chat templates (the serve extra)
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="also run the tests marked slow (CI does)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow (CI does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def data_file(name: str) -> Path:
    """A file of tests/data; its absence is a broken checkout, not a reason to skip."""
    path = DATA / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the repository")
    return path


def _blocked_imports(packages: tuple[str, ...] = OPTIONAL_PACKAGES) -> str:
    """Python source that, run first in a fresh interpreter, makes `packages` unimportable (and
    invisible to importlib.util.find_spec), as if they were not installed."""
    return f"""
import importlib.abc, importlib.util, sys
_BLOCKED = {tuple(packages)!r}
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _BLOCKED:
            raise ImportError(f"blocked optional package {{name}}")
        return None
sys.meta_path.insert(0, _Block())
_find = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a, **k: None if name.split(".")[0] in _BLOCKED else _find(name, *a, **k)
"""


@pytest.fixture(scope="session")
def blocked_imports():
    """`blocked_imports(packages)`: Python source to run first in a fresh interpreter so that
    `packages` (default: every optional package) behave as if they were not installed."""
    return _blocked_imports


@pytest.fixture(scope="session")
def vocab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with gpt2.tiktoken, encoder.json and vocab.bpe, written from the package's
    vocabulary and checked byte for byte (sha256) against OpenAI's released files."""
    from gpt2.tokenizer import Tokenizer
    from gpt2.tokenizer.writers import encoder_json_bytes, merges_bytes, tiktoken_bytes

    tok = Tokenizer.gpt2()
    files = {
        "gpt2.tiktoken": tiktoken_bytes(tok.encoder),
        "encoder.json": encoder_json_bytes(tok.encoder, tok.special_tokens),
        "vocab.bpe": merges_bytes(tok.encoder),
    }
    directory = tmp_path_factory.mktemp("vocab")
    for name, data in files.items():
        assert hashlib.sha256(data).hexdigest() == OFFICIAL_VOCABULARY_SHA256[name], name
        (directory / name).write_bytes(data)
    return directory


@pytest.fixture(scope="session")
def tiktoken_gpt2(vocab_dir: Path):
    """tiktoken's GPT-2 encoding, built offline from the official gpt2.tiktoken."""
    pytest.importorskip("tiktoken")
    import tiktoken
    import tiktoken.load

    ranks = tiktoken.load.load_tiktoken_bpe(str(vocab_dir / "gpt2.tiktoken"))
    return tiktoken.Encoding(
        name="gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256}
    )


@pytest.fixture(scope="session")
def verdict() -> Path:
    """the-verdict.txt, the classic tiny training text (20 KB)."""
    return data_file("the-verdict.txt")


@pytest.fixture(scope="session")
def shakespeare() -> Path:
    """A 150 KB excerpt of tinyshakespeare.txt."""
    return data_file("tinyshakespeare-excerpt.txt")


# --- training ------------------------------------------------------------------------------------

# A model shape small enough that a training step takes milliseconds; GPT-2's vocabulary stays.
SMALL_SHAPE = {"n_layer": 2, "n_embd": 32, "n_head": 2, "n_ctx": 64}
# Training options that make a run of a few steps exercise evaluation, sampling and checkpoints.
QUICK_TRAINING = {
    "batch_size": 4,
    "context_length": 32,
    "eval_interval": 4,
    "eval_batches": 2,
    "sample_tokens": 4,
    "checkpoint_interval": 4,
    "warmup_steps": 2,
    "lr": 1e-3,
}


@pytest.fixture(scope="session")
def small_shape() -> dict[str, int]:
    return dict(SMALL_SHAPE)


@pytest.fixture(scope="session")
def quick_training() -> dict[str, float]:
    return dict(QUICK_TRAINING)


@pytest.fixture
def private_cache(monkeypatch, tmp_path):
    """$XDG_CACHE_HOME in the test's own directory: a training run's token cache (and anything
    else cached under it) starts empty and never reaches the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


@pytest.fixture
def small_config(tmp_path, small_shape) -> str:
    """The small shape as a config file for `gpt2 train --config`."""
    path = tmp_path / "small.json"
    path.write_text(json.dumps(small_shape))
    return str(path)


# --- engines -------------------------------------------------------------------------------------


class EngineKit:
    """A small random model whose every dimension differs, its parameter tree, the three engines
    over it, and the references they are checked against (the torch module, transformers)."""

    def __init__(self) -> None:
        import torch

        from gpt2.config import Config
        from gpt2.engines import load_engine
        from gpt2.engines.torch.model import GPT2

        self.config = Config(n_layer=2, n_embd=32, n_head=4, vocab_size=97, n_ctx=48)
        self.prompt = [3, 14, 15, 92, 65, 35, 8, 9, 79]
        torch.manual_seed(0)
        model = GPT2(self.config).eval()
        with torch.no_grad():  # GPT-2's init plus noise, so biases and layer-norm terms matter
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        self.model = model
        self.params = model.to_params()
        self.engines = {
            "numpy": load_engine("numpy", self.config, self.params),
            "torch": load_engine("torch", self.config, self.params, device="cpu"),
            "pure": load_engine("pure", self.config, self.params),
        }

    @staticmethod
    def as_numpy(logits):
        import numpy as np

        if hasattr(logits, "detach"):
            return logits.detach().cpu().numpy()
        return np.asarray(logits, dtype=np.float64)

    def reference_logits(self, ids):
        """The torch module's logits [T, V] for ids, as NumPy."""
        import torch

        with torch.no_grad():
            return self.model(torch.tensor([ids]))[0][0].numpy()

    def transformers_model(self):
        """transformers.GPT2LMHeadModel holding the same weights."""
        transformers = pytest.importorskip("transformers")
        from gpt2.engines.torch.model import GPT2

        hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**self.config.to_hf_dict())).eval()
        state = GPT2.from_params(self.config, self.params).state_dict()
        missing, unexpected = hf.load_state_dict({"transformer." + n: state[n] for n in self.params}, strict=False)
        assert not unexpected and set(missing) <= {"lm_head.weight"}  # the head is tied to wte
        hf.tie_weights()
        return hf

    def greedy(self, engine, n=40, prompt=None):
        from gpt2.generation import Sampler, SamplingConfig, generate

        ids = self.prompt if prompt is None else prompt
        return list(generate(engine, ids, n, Sampler(SamplingConfig(temperature=0.0)), stop_ids=()))


@pytest.fixture(scope="session")
def kit() -> EngineKit:
    """The small model and all three engines over it (needs NumPy and PyTorch)."""
    pytest.importorskip("numpy")
    pytest.importorskip("torch")
    return EngineKit()


# --- the explorer ----------------------------------------------------------------------------------


class ExploreModel:
    """A small model with GPT-2's vocabulary for the explorer's tests: weights large enough that
    attention is far from uniform and the logit lens has favourites; saved to `directory` too."""

    def __init__(self, directory: Path) -> None:
        import numpy as np

        from gpt2.config import Config
        from gpt2.params import param_shapes
        from gpt2.tensor import Tensor
        from gpt2.weights import save_model

        self.config = Config(n_layer=2, n_embd=32, n_head=4, n_ctx=64)
        rng = np.random.default_rng(14)
        self.params = {}
        for name, shape in param_shapes(self.config).items():
            if len(shape) == 2:
                values = rng.standard_normal(shape) * 0.3
            elif name.endswith("weight"):  # layer-norm gains
                values = 1.0 + 0.1 * rng.standard_normal(shape)
            else:
                values = 0.1 * rng.standard_normal(shape)
            self.params[name] = Tensor(shape, "F32", values.astype("<f4").tobytes())
        self.directory = directory
        save_model(directory, self.config, self.params)


@pytest.fixture(scope="session")
def explore_model(tmp_path_factory: pytest.TempPathFactory) -> ExploreModel:
    """The explorer's small model (needs NumPy)."""
    pytest.importorskip("numpy")
    return ExploreModel(tmp_path_factory.mktemp("explore-model"))
