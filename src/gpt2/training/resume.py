"""Where a run starts, and how it reads back the training state of a checkpoint
(`train_state.pt`, which `Trainer.training_state` in `loop.py` writes).

A run starts from a new model of a given shape, from a model to fine-tune (`--init`), or
from its own last checkpoint (`--resume`). Resumed, it takes back the checkpoint's model
shape (a different `--config` is refused), its settings (options given again override
them), and its weights, optimizer moments, sampler position and every random state, which
is why a resumed run retraces a straight run exactly. The trainer's
`training_state` writes the keys these functions read (nothing here knows the trainer);
:func:`resync_export` repairs an export a cut save left behind.

>>> from gpt2.config import Config
>>> starting_model(None, None, None) == (Config.preset("tiny"), None)
True
>>> saved = {"settings_given": {"max_steps": 100}, "settings": {"lr": 6e-4}}
>>> settings = run_settings({"max_steps": 200}, saved)  # the option given again wins
>>> settings.max_steps, settings.lr  # the saved rate, not today's default
(200, 0.0006)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..params import Params
from . import checkpoint
from .config import TrainConfig
from .errors import CheckpointError

__all__ = [
    "starting_model",
    "run_settings",
    "rng_state",
    "set_rng_state",
    "resync_export",
    "interrupted_message",
]


# --- where a run starts ----------------------------------------------------------------------


def starting_model(config: Config | None, init: str | None, resume_state: dict | None) -> tuple[Config, Any]:
    """The model's shape and its starting weights (None: random init): the checkpoint's shape on
    resume, the `init` model's to fine-tune, else `config` (default: the tiny preset)."""
    if resume_state is not None:
        saved = Config.from_hf_dict(resume_state["model_config"]).replace(dropout=resume_state["dropout"])
        if config is not None and config.replace(dropout=0.0) != saved.replace(dropout=0.0):
            raise CheckpointError(
                f"the checkpoint was trained with a different model ({_describe(saved)}) than "
                f"requested ({_describe(config)}); drop --config or choose another --out"
            )
        return saved, None
    if init is not None:
        from .models import load_pretrained

        loaded, params = load_pretrained(init)
        if config is not None and config.replace(dropout=0.0) != loaded.replace(dropout=0.0):
            raise CheckpointError(
                f"--init {init} is {_describe(loaded)}, which differs from the requested {_describe(config)}"
            )
        return loaded, params
    return (config or Config.preset("tiny")), None


def _describe(c: Config) -> str:
    return (
        f"n_layer={c.n_layer} n_embd={c.n_embd} n_head={c.n_head} n_ctx={c.n_ctx} "
        f"vocab={c.vocab_size} qkv_bias={c.qkv_bias} positions={c.position_embedding}"
    )


def run_settings(options: Mapping[str, Any], resume_state: dict | None) -> TrainConfig:
    """The run's TrainConfig: `options`, over the settings the checkpoint was given on resume."""
    if resume_state is None:
        return TrainConfig.from_dict(options)
    given = dict(resume_state["settings_given"])
    saved = resume_state.get("settings", {})
    if given.get("lr") is None and "lr" in saved:
        # the default rate has changed (it follows the width now): a run keeps the one it started with
        given["lr"] = saved["lr"]
    if given.get("threads") is None and saved.get("threads"):
        given["threads"] = saved["threads"]  # the count is part of the result (threads.py)
    return TrainConfig.from_dict({**given, **options})


# --- the random states a checkpoint holds ----------------------------------------------------


def rng_state(device: torch.device) -> dict:
    """This process's random states (Python's, torch's, the GPU's), for the checkpoint."""
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    """Restore the random states `rng_state` saved."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def resync_export(
    out: Path, state: dict, model_config: Config, to_params: Callable[[], Params], chat_template: str | None = None
) -> str | None:
    """A save cut between its two writes left the exported model behind the state:
    export the state's weights again, so the directory holds one checkpoint. The notice
    to give when it had to (None: nothing to say)."""
    before = checkpoint.exported_step(out)
    missing = not (out / checkpoint.MODEL_FILE).exists()
    if checkpoint.sync_export(out, state, model_config, to_params, chat_template):
        if before is not None or missing:  # not for runs saved before steps were recorded
            return (
                f"the exported model was {f'from step {before}' if before is not None else 'missing'} "
                f"but the training state is from step {state['step']} (a save was interrupted); "
                "exported the model of the state again"
            )
    return None


# --- what an interrupted run left ------------------------------------------------------------


def interrupted_message(out_dir: str | Path, step: int | None, saved_step: int | None, interval: int) -> str:
    """What a Ctrl-C left behind: checkpoints are atomic, so the last finished one is intact.
    `step` None: training had not started; `saved_step` None: no checkpoint finished yet.

    >>> interrupted_message("runs/a", 20, 15, 5)
    'interrupted at step 20; the last checkpoint (step 15) is in runs/a: continue it with --resume'
    """
    if step is None:
        return f"interrupted before training started; {out_dir} holds no new checkpoint"
    if saved_step is None:
        return (
            f"interrupted at step {step}, before a checkpoint was complete; nothing was saved "
            f"(checkpoints every {interval} steps: --checkpoint-interval)"
        )
    return (
        f"interrupted at step {step}; the last checkpoint (step {saved_step}) is in {out_dir}: "
        "continue it with --resume"
    )
