"""Training: data pipeline, schedule, optimizer groups, atomic checkpoints, learning,
exact resume and crash safety."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

from gpt2 import Config  # noqa: E402
from gpt2.tokenizer import Tokenizer  # noqa: E402
from gpt2.training import (  # noqa: E402
    CheckpointError,
    DataError,
    StepDone,
    TrainConfig,
    TrainConfigError,
    checkpoint,  # noqa: E402
    train,
)
from gpt2.training.data import Windows, WindowSampler, load_tokens, split_tokens  # noqa: E402
from gpt2.training.optim import parameter_groups  # noqa: E402
from gpt2.training.schedule import learning_rate  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.gpt2()


@pytest.fixture
def small_run(tmp_path, tokenizer, verdict, small_shape, quick_training):
    """`small_run(out="run", ...)`: a few quick steps of the small shape on the-verdict.txt."""

    def run(out="run", on_event=None, resume=False, config=None, **options):
        return train(
            verdict,
            tmp_path / out,
            tokenizer=tokenizer,
            config=config or Config(**small_shape),
            resume=resume,
            options={**quick_training, **options},
            cache_dir=tmp_path / "cache",
            on_event=on_event,
        )

    return run


# --- pieces ---------------------------------------------------------------------------------


def test_schedule_warms_up_then_decays_to_the_floor():
    lrs = [learning_rate(s, max_lr=1.0, min_lr=0.1, warmup=4, total=20) for s in range(25)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    assert lrs[20:] == [0.1] * 5


def test_sampler_is_a_permutation_per_epoch_and_resumes_mid_epoch():
    s = WindowSampler(10, seed=3)
    first = s.take(10)
    assert sorted(first) == list(range(10))
    s.take(4)
    state = s.state_dict()
    t = WindowSampler(10, seed=3)
    t.load_state_dict(state)
    assert t.take(13) == s.take(13)
    assert WindowSampler(10, seed=4).take(10) != first


def test_windows_inputs_and_targets_are_shifted_by_one():
    w = Windows(np.arange(20, dtype=np.uint16), context=5, stride=3)
    assert list(w.starts) == [0, 3, 6, 9, 12]  # the last window ends at token 17 + 1
    x, y = w.batch([4, 0])
    assert x.dtype == torch.int64 and tuple(x.shape) == (2, 5)
    assert x[0].tolist() == [12, 13, 14, 15, 16] and y[0].tolist() == [13, 14, 15, 16, 17]


def test_split_refuses_text_too_short_for_the_context():
    tokens = np.arange(50, dtype=np.uint16)
    train_part, val_part = split_tokens(tokens, 0.2, 16)
    assert len(train_part) + len(val_part) == 50 and len(val_part) >= 17
    with pytest.raises(DataError, match="too short for context length 32"):
        split_tokens(tokens, 0.2, 32)
    # the message counts what each part needs, never "5 tokens, 257 of them held out"
    with pytest.raises(
        DataError, match=r"has 5 tokens, too short for context length 16 \(training needs 17 and validation 17\)"
    ):
        split_tokens(tokens[:5], 0.1, 16, name="x.txt")
    with pytest.raises(DataError, match=r"\(training needs 17\);"):
        split_tokens(tokens[:5], 0.0, 16)


def test_weight_decay_applies_to_matrices_only(small_shape):
    from gpt2.engines.torch.model import GPT2

    model = GPT2(Config(**small_shape, position_embedding="sinusoidal", qkv_bias=False))
    decay, no_decay = parameter_groups(model, 0.1)
    assert all(p.ndim == 2 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert not any(p is model.wpe.weight for p in decay["params"])  # the fixed table is not trained
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0


def test_token_cache_is_reused_and_directories_are_joined_with_eot(tmp_path, tokenizer):
    d = tmp_path / "corpus"
    d.mkdir()
    (d / "a.txt").write_text("Hello there.")
    (d / "b.txt").write_text("General Kenobi!")
    (d / ".hidden").write_text("never read")
    tokens, key = load_tokens(d, tokenizer, tmp_path / "cache")
    ids = tokens.tolist()
    assert ids.count(tokenizer.eot_token) == 2 and ids[-1] == tokenizer.eot_token
    assert tokenizer.decode([i for i in ids if i != tokenizer.eot_token]) == "Hello there.General Kenobi!"
    from gpt2.training.data import CACHE_HEADER, cache_path

    assert cache_path(tmp_path / "cache", key).stat().st_size == CACHE_HEADER + 2 * len(ids)

    class Refuses:  # a second run must not tokenise again
        eot_token = tokenizer.eot_token

        def encode_ordinary(self, text):
            if "Kenobi" in text or "There" in text:
                raise AssertionError("tokenised twice")
            return tokenizer.encode_ordinary(text)

    Refuses.__name__ = type(tokenizer).__name__
    again, key2 = load_tokens(d, Refuses(), tmp_path / "cache")
    assert key2 == key and again.tolist() == ids


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b"",  # empty
        lambda b: b[:-1],  # cut short: an odd size
        lambda b: b[:-2],  # cut at a token boundary: the count in the header disagrees
        lambda b: b[:-4] + b[-2:],  # one token missing, still ending with end-of-text
        lambda b: b[:-3] + bytes([b[-3] ^ 1]) + b[-2:],  # one bit flipped, length and end intact
        lambda b: b"\x01\x00\x02\x00",  # another format altogether
    ],
    ids=["empty", "odd", "short", "dropped", "flipped", "foreign"],
)
def test_a_damaged_token_cache_is_rebuilt_not_trusted(tmp_path, tokenizer, damage):
    from gpt2.training.data import CACHE_HEADER, cache_path

    data = tmp_path / "a.txt"
    data.write_text("Hello there, general Kenobi.")
    tokens, key = load_tokens(data, tokenizer, tmp_path / "cache")
    cache = cache_path(tmp_path / "cache", key)
    cache.write_bytes(damage(cache.read_bytes()))
    again, _ = load_tokens(data, tokenizer, tmp_path / "cache")
    assert again.tolist() == tokens.tolist()
    assert cache.stat().st_size == CACHE_HEADER + 2 * len(tokens)  # and the file is repaired
    assert load_tokens(data, tokenizer, tmp_path / "cache")[0].tolist() == tokens.tolist()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
        (b"caf\xe9 au lait", "not UTF-8 text"),
    ],
)
def test_unreadable_data_is_a_clear_error(tmp_path, tokenizer, content, message):
    f = tmp_path / "data.txt"
    f.write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_tokens(f, tokenizer, None)


def test_settings_reject_impossible_values():
    with pytest.raises(TrainConfigError, match="batch-size"):
        TrainConfig(batch_size=0)
    with pytest.raises(TrainConfigError, match="longer than the model's context window 64"):
        TrainConfig(context_length=65).resolved(Config(n_layer=2, n_embd=32, n_head=2, n_ctx=64))


def test_atomic_write_failure_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    checkpoint.atomic_write_bytes(path, b"old")
    monkeypatch.setattr(os, "replace", _raise(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError):
        checkpoint.atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temporary left behind


def _raise(exc):
    def fail(*args, **kwargs):
        raise exc

    return fail


# --- learning -------------------------------------------------------------------------------


def test_tiny_preset_learns_the_verdict(tmp_path, tokenizer, verdict):
    """The issue's proof: the tiny preset with the default learning rate, a few CPU steps,
    and the validation loss falls by more than 2 nats."""
    evals = []
    result = train(
        verdict,
        tmp_path / "tiny",
        tokenizer=tokenizer,
        config=Config.preset("tiny"),
        options=dict(
            max_steps=20,
            batch_size=4,
            context_length=32,
            warmup_steps=2,
            eval_interval=20,
            eval_batches=2,
            sample_tokens=8,
            checkpoint_interval=20,
        ),
        cache_dir=tmp_path / "cache",
        on_event=lambda e: evals.append(e) if hasattr(e, "val_loss") else None,
    )
    losses = [e.val_loss for e in evals]
    assert [e.step for e in evals] == [0, 20]  # before training, and after
    assert losses[0] > 10 and losses[-1] < losses[0] - 2.0, losses  # ln(50257) = 10.8 at the start
    assert result.step == 20 and isinstance(evals[-1].sample, str)

    from gpt2.engines.torch.model import GPT2
    from gpt2.weights import load_model

    config, params = load_model(tmp_path / "tiny")  # what `gpt2 generate --model DIR` loads
    assert config == Config.preset("tiny")
    model = GPT2.from_params(config, params)
    ids = torch.tensor([[464, 1110, 318]])
    state = torch.load(tmp_path / "tiny" / checkpoint.STATE_FILE, weights_only=True)
    twin = GPT2(config)
    twin.load_state_dict(state["model"])
    assert torch.equal(model(ids)[0], twin(ids)[0])
    assert (tmp_path / "tiny" / "metrics.jsonl").is_file() and (tmp_path / "tiny" / "loss.png").is_file()


def test_the_default_learning_rate_follows_the_width(tmp_path, small_run):
    from gpt2.training import TrainStarted
    from gpt2.training.config import default_lr

    started: list[TrainStarted] = []
    small_run(on_event=lambda e: started.append(e) if isinstance(e, TrainStarted) else None, max_steps=1, lr=None)
    assert started[0].train_config["lr"] == default_lr(Config(n_layer=2, n_embd=32, n_head=2)) == 2e-3
    assert started[0].train_config["min_lr"] == pytest.approx(2e-4)
    assert default_lr(Config.preset("gpt2")) == 6e-4 and default_lr(Config.preset("gpt2-xl")) < 3e-4
    with pytest.raises(TrainConfigError, match="min-lr 0.01 is above the learning rate 0.002"):
        TrainConfig(min_lr=0.01).resolved(Config.preset("tiny"))


def test_a_run_resumes_with_the_learning_rate_it_started_with(
    tmp_path, tokenizer, verdict, small_shape, quick_training
):
    """Runs saved when the default rate was 6e-4 everywhere keep it on --resume."""
    from gpt2.training import TrainStarted

    options = {k: v for k, v in quick_training.items() if k != "lr"}
    started: list[TrainStarted] = []

    def run(resume: bool, max_steps: int) -> None:
        train(
            verdict,
            tmp_path / "run",
            tokenizer=tokenizer,
            config=Config(**small_shape),
            resume=resume,
            options={**options, "max_steps": max_steps},
            cache_dir=tmp_path / "cache",
            on_event=lambda e: started.append(e) if isinstance(e, TrainStarted) else None,
        )

    run(resume=False, max_steps=2)
    path = tmp_path / "run" / checkpoint.STATE_FILE
    state = torch.load(path, weights_only=True)
    assert "lr" not in state["settings_given"] and state["settings"]["lr"] == 2e-3
    state["settings"]["lr"] = 6e-4  # as a run of the old default saved it
    torch.save(state, path)
    run(resume=True, max_steps=4)
    assert [e.train_config["lr"] for e in started] == [2e-3, 6e-4]


@pytest.mark.parametrize("native", [False, True])
def test_bfloat16_on_a_cpu_without_native_support_is_said(tmp_path, small_run, monkeypatch, native):
    import gpt2.training.loop as loop
    from gpt2.training import Notice
    from gpt2.training.cpu_features import Bf16Support

    monkeypatch.setattr(loop, "cpu_bf16_support", lambda: Bf16Support(native, ("avx512_bf16",) * native, "test"))
    notices: list[str] = []
    result = small_run(
        on_event=lambda e: notices.append(e.message) if isinstance(e, Notice) else None,
        max_steps=2,
        dtype="bfloat16",
        device="cpu",
    )
    assert result.step == 2 and result.val_loss is not None
    said = [n for n in notices if "no native bfloat16" in n]
    if native:
        assert said == []
    else:
        assert len(said) == 1 and "usually slower than float32" in said[0]


# --- exact resume ---------------------------------------------------------------------------


class Killed(Exception):
    pass


def test_resume_continues_exactly_like_a_straight_run(tmp_path, tokenizer, small_run):
    options = dict(max_steps=8, dropout=0.1)  # dropout: the RNG must be restored too
    straight: list[float] = []
    small_run("straight", on_event=_record(straight), **options)

    first: list[float] = []

    def kill_after_step_5(event):
        _record(first)(event)
        if isinstance(event, StepDone) and event.step == 5:
            raise Killed  # the state of step 5 dies with the process; step 4 was saved

    with pytest.raises(Killed):
        small_run("interrupted", on_event=kill_after_step_5, **options)
    assert first == straight[:5]

    resumed: list[float] = []
    result = small_run("interrupted", on_event=_record(resumed), resume=True, **options)
    assert result.step == 8
    assert resumed == straight[4:]  # steps 5..8, bit for bit
    a = torch.load(tmp_path / "straight" / checkpoint.STATE_FILE, weights_only=True)["model"]
    b = torch.load(tmp_path / "interrupted" / checkpoint.STATE_FILE, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [r["step"] for r in checkpoint_metrics(tmp_path / "interrupted") if r["kind"] == "train"]
    assert steps == list(range(1, 9))  # the log forgot the unsaved step 5 of the killed run


def _record(losses):
    def on_event(event):
        if isinstance(event, StepDone):
            losses.append(event.loss)

    return on_event


def checkpoint_metrics(directory):
    from gpt2.training.metrics import read_metrics

    return read_metrics(directory / "metrics.jsonl")


def test_resume_refuses_another_model_config_and_other_data(tmp_path, tokenizer, small_run, verdict, small_shape):
    small_run(max_steps=2, checkpoint_interval=2)
    with pytest.raises(CheckpointError, match="different model"):
        small_run(resume=True, config=Config(**{**small_shape, "n_layer": 3}), max_steps=4)
    with pytest.raises(CheckpointError, match="already holds a checkpoint"):
        small_run(max_steps=4)
    other = tmp_path / "other.txt"
    other.write_text(verdict.read_text()[:-100])
    with pytest.raises(DataError, match="not the text this checkpoint was trained on"):
        train(other, tmp_path / "run", tokenizer=tokenizer, resume=True, options={"max_steps": 4}, cache_dir=None)
    assert checkpoint.load_state(tmp_path / "run")["step"] == 2


# --- crash safety ---------------------------------------------------------------------------


def test_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, tokenizer, monkeypatch, small_run):
    real_fsync = os.fsync

    def on_event(event):
        if type(event).__name__ == "CheckpointSaved" and event.step == 4:

            def full_disk(fd):
                real_fsync(fd)
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(os, "fsync", full_disk)

    with pytest.raises(CheckpointError, match=r"no space left on device.*previous checkpoint \(step 4\) is intact"):
        small_run(on_event=on_event, max_steps=8)
    monkeypatch.undo()
    assert checkpoint.load_state(tmp_path / "run")["step"] == 4
    assert not list((tmp_path / "run").glob(".*.tmp"))
    result = small_run(resume=True, max_steps=8)
    assert result.step == 8


KILL_DURING_SAVE = """
import os, signal, sys
from gpt2 import Config
from gpt2.tokenizer import Tokenizer
from gpt2.training import train, checkpoint
real_replace = os.replace
saves = []
def replace_then_die(src, dst):
    if os.path.basename(str(dst)) == checkpoint.STATE_FILE:
        saves.append(dst)
        if len(saves) == 2:  # the second checkpoint: written, fsynced, not yet renamed
            os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst)
os.replace = replace_then_die
train({verdict!r}, {out!r}, tokenizer=Tokenizer.gpt2(), config=Config(**{small!r}),
      options={{**{fast!r}, "max_steps": 8}}, cache_dir={cache!r})
"""


def test_sigkill_during_save_leaves_the_last_good_checkpoint(
    tmp_path, tokenizer, small_run, verdict, small_shape, quick_training
):
    out = tmp_path / "run"
    script = KILL_DURING_SAVE.format(
        verdict=str(verdict), small=small_shape, fast=quick_training, out=str(out), cache=str(tmp_path / "cache")
    )
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert list(out.glob(".train_state.pt.*.tmp"))  # the kill really landed mid-save
    assert checkpoint.load_state(out)["step"] == 4

    from gpt2.weights import load_model

    load_model(out)  # the exported model of step 4 is whole too
    result = small_run(resume=True, max_steps=8)
    assert result.step == 8 and not list(out.glob(".*.tmp"))


def test_gradient_accumulation_matches_one_big_batch(tmp_path, tokenizer, small_run):
    big: list[float] = []
    accumulated: list[float] = []
    common = dict(max_steps=3, eval_interval=3, checkpoint_interval=3, sample_interval=0)
    small_run("big", on_event=_record(big), batch_size=4, **common)
    small_run("accum", on_event=_record(accumulated), batch_size=2, grad_accum=2, **common)
    assert accumulated == pytest.approx(big, abs=1e-5)


def test_loss_plot_is_quiet_when_home_is_not_writable(tmp_path):
    # matplotlib logs "mkdir -p failed ..." and a long MPLCONFIGDIR advice on import when
    # it cannot write its config directory; the plot works anyway, so training says nothing.
    pytest.importorskip("matplotlib")
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    env["HOME"] = str(tmp_path / "no" / "such" / "home")
    (tmp_path / "no").write_text("a file, so nothing can be created below it")
    code = (
        "from gpt2.training.metrics import plot_losses; "
        f"plot_losses([{{'kind': 'train', 'step': 1, 'loss': 2.0}}], {str(tmp_path / 'loss.png')!r})"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "" and (tmp_path / "loss.png").stat().st_size > 0


def test_a_model_too_big_for_memory_is_a_clear_error(monkeypatch):
    # Not a real 25 TB allocation (an overcommitting kernel might grant it and then kill
    # us): the allocator's failure is simulated.
    import gpt2.engines.torch.model
    from gpt2.config import Config
    from gpt2.training.errors import TrainConfigError
    from gpt2.training.models import new_model

    def refuse(config):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(gpt2.engines.torch.model, "GPT2", refuse)
    with pytest.raises(TrainConfigError, match="not enough memory for a model of 124M parameters"):
        new_model(Config.preset("gpt2"))

    def bug(config):
        raise RuntimeError("some other failure")

    monkeypatch.setattr(gpt2.engines.torch.model, "GPT2", bug)
    with pytest.raises(RuntimeError, match="some other failure"):  # real bugs still surface
        new_model(Config.preset("gpt2"))


def test_an_empty_data_path_is_not_the_current_directory(tmp_path, tokenizer, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("private notes that must not become training data")
    with pytest.raises(DataError, match="the data path is empty"):
        load_tokens("", tokenizer, None)
