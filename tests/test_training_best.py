"""The best model by validation loss is kept beside the last one, a run that overfits is
warned once, the last line says where everything is, and fine-tuning has its own default
rate (issue 21: validation 5.59 at step 200, 5.82 at step 300, without a word)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from gpt2 import Config  # noqa: E402
from gpt2.cli import main  # noqa: E402
from gpt2.tokenizer import Tokenizer  # noqa: E402
from gpt2.training import (  # noqa: E402
    Evaluated,
    Notice,
    TrainStarted,
    ValidationRising,
    checkpoint,
    train,
)
from gpt2.training.best import BEST_DIR, PATIENCE, best_on_disk, export_best, forget_best_after  # noqa: E402
from gpt2.training.config import default_lr  # noqa: E402

pytestmark = pytest.mark.usefixtures("private_cache")  # see conftest.py

# The validation losses the scripted runs measure, by step (evaluations every 2 steps): the
# best at step 4, then above it at 6, 8 and 10 (the third: the warning), and at 12.
VALIDATION = {0: 10.0, 2: 6.0, 4: 5.0, 6: 5.5, 8: 5.2, 10: 5.9, 12: 6.0}


@pytest.fixture
def scripted(monkeypatch):
    """The trainer measures VALIDATION on its validation windows (training windows: a falling
    loss), and draws its plot as a few bytes."""
    import gpt2.training.loop as loop

    def windows_loss(model, windows, indices, **kwargs):
        step = trainer_step[0]
        return VALIDATION[step] if windows is trainer_val[0] else 8.0 - step / 4

    trainer_step, trainer_val = [0], [None]
    real_evaluate = loop.Trainer.evaluate

    def evaluate(self, final):
        trainer_step[0], trainer_val[0] = self.step, self.val_windows
        return real_evaluate(self, final)

    monkeypatch.setattr(loop, "windows_loss", windows_loss)
    monkeypatch.setattr(loop.Trainer, "evaluate", evaluate)
    monkeypatch.setattr(loop, "plot_losses", lambda records, path, title: path.write_bytes(b"a plot"))


@pytest.fixture
def run(tmp_path, verdict, small_shape, quick_training):
    def run(out="run", on_event=None, resume=False, **options):
        settings = {**quick_training, "eval_interval": 2, "checkpoint_interval": 6, "sample_interval": 0}
        return train(
            verdict,
            tmp_path / out,
            tokenizer=Tokenizer.gpt2(),
            config=Config(**small_shape),
            resume=resume,
            options={**settings, "max_steps": 12, **options},
            cache_dir=tmp_path / "cache",
            on_event=on_event,
        )

    return run


def test_the_best_model_is_kept_beside_the_last_and_overfitting_is_said_once(tmp_path, scripted, run):
    from gpt2.weights import load_model

    events: list = []
    result = run(on_event=events.append)
    out = tmp_path / "run"
    assert (result.step, result.best_step, result.best_val_loss) == (12, 4, 5.0)
    assert result.best_directory == str(out / BEST_DIR) and result.plot == str(out / "loss.png")
    assert best_on_disk(out) == (4, 5.0) and checkpoint.exported_step(out) == 12  # the root: the last
    best_config, best = load_model(out / BEST_DIR)  # a complete model directory of its own
    last_config, last = load_model(out)
    assert best_config == last_config and best["wte.weight"].data != last["wte.weight"].data
    assert (out / BEST_DIR / "vocab.json").is_file() and (out / BEST_DIR / "generation_config.json").is_file()

    assert [e.step for e in events if isinstance(e, Evaluated) and e.best] == [0, 2, 4]
    rising = [e for e in events if isinstance(e, ValidationRising)]
    assert len(rising) == 1  # once, though step 12 is above the best too
    e = rising[0]
    assert (e.step, e.val_loss, e.best_step, e.best_val_loss, e.evaluations) == (10, 5.9, 4, 5.0, PATIENCE)
    assert (e.best_train_loss, e.train_loss, e.best_directory) == (7.0, 5.5, str(out / BEST_DIR))


def test_a_resumed_run_keeps_the_best_and_the_warning_of_a_straight_one(tmp_path, scripted, run):
    straight: list = []
    run("straight", on_event=straight.append)
    first: list = []
    run("resumed", on_event=first.append, max_steps=6)  # a checkpoint at step 6, after the best
    resumed: list = []
    result = run("resumed", on_event=resumed.append, resume=True)
    assert (result.best_step, result.best_directory) == (4, str(tmp_path / "resumed" / BEST_DIR))
    assert best_on_disk(tmp_path / "resumed") == (4, 5.0)
    rising = [e.step for e in first + resumed if isinstance(e, ValidationRising)]
    assert rising == [e.step for e in straight if isinstance(e, ValidationRising)] == [10]


def test_a_best_model_exported_after_the_last_checkpoint_is_forgotten_on_resume(tmp_path, small_shape):
    from gpt2.engines.torch.model import GPT2

    config = Config(**small_shape)
    params = GPT2(config).to_params()
    export_best(tmp_path, config, params, 7, 4.5)  # a killed run got this far after its checkpoint
    assert forget_best_after(tmp_path, 8) is None and best_on_disk(tmp_path) == (7, 4.5)
    assert forget_best_after(tmp_path, 6) == 7 and not (tmp_path / BEST_DIR).exists()


def test_the_command_line_warns_and_says_where_the_models_and_the_curve_are(
    tmp_path, scripted, small_config, verdict, capsys
):
    out = tmp_path / "run"
    flags = ["--batch-size", "4", "--context-length", "32", "--eval-interval", "2", "--eval-batches", "1"]
    flags += ["--checkpoint-interval", "6", "--sample-interval", "0", "--max-steps", "12", "--device", "cpu"]
    assert main(["train", "--data", str(verdict), "--out", str(out), "--config", small_config, *flags]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "warning: " in line]
    assert len(warnings) == 1, err
    assert "validation loss (5.9000 at step 10) has stayed above its best (5.0000 at step 4)" in warnings[0]
    assert f"{PATIENCE} evaluations in a row" in warnings[0] and f"kept in {out / BEST_DIR}" in warnings[0]
    assert "validation 5.0000 (perplexity 148.4, best so far)" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("trained to step 12, validation loss 6.0000; ")
    assert f"the best, 5.0000 at step 4, is in {out / BEST_DIR}; loss curve in {out / 'loss.png'}; " in last
    assert last.endswith(f"; model in {out} (gpt2 generate --model {out})")


def test_fine_tuning_defaults_to_half_the_from_scratch_rate(tmp_path, run, small_shape, verdict):
    run("base", max_steps=1)
    started: list = []
    train(
        verdict,
        tmp_path / "tuned",
        tokenizer=Tokenizer.gpt2(),
        init=str(tmp_path / "base"),
        options={"max_steps": 1, "batch_size": 1, "context_length": 8, "eval_batches": 1, "sample_interval": 0},
        cache_dir=tmp_path / "cache",
        on_event=lambda e: isinstance(e, (TrainStarted, Notice)) and started.append(e),
    )
    lr = [e.train_config["lr"] for e in started if isinstance(e, TrainStarted)]
    assert lr == [default_lr(Config(**small_shape), fine_tune=True)] == [default_lr(Config(**small_shape)) / 2]
