"""The trainer: :func:`train`, from text to a checkpointed model, and the
:class:`Trainer` behind it (one method per concept: step, evaluate, save).

Each optimizer step:

1. set the learning rate for this step (warm-up, then cosine);
2. take the step's window indices from the seeded sampler (the same list on every
   process; process r uses its own slice of each micro-batch);
3. for each micro-batch: forward under autocast, backward of loss / grad_accum
   (DDP averages gradients across processes on the last micro-batch only);
4. clip the global gradient norm, step AdamW, clear the gradients.

Every `eval_interval` steps it measures train and validation loss and draws a sample;
every `checkpoint_interval` steps (and at the end) it saves atomically. Everything the
next step depends on is in the checkpoint (weights, optimizer moments, step, sampler
position, every RNG state; `resume.py`), which is why a resumed run retraces a straight
run exactly.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch

from ..chat_template import model_directory
from ..config import Config
from ..engines.torch.device import pick_device
from . import checkpoint, distributed
from .allocator import keep_freed_memory
from .best import BestKeeper
from .cpu_features import cpu_bf16_support
from .data import Windows, WindowSampler, check_vocabulary, load_tokens, split_tokens
from .errors import CheckpointError, DataError, TrainingInterrupted
from .evaluate import autocast_context, sample_text, spread_indices, windows_loss
from .events import CheckpointSaved, Evaluated, Notice, StepDone, Tokenizing, TrainStarted
from .instructions import Examples, is_instruction_data, load_instruction_data
from .lock import RunLock
from .metrics import METRICS_FILE, PLOT_FILE, MetricsLog, plot_losses
from .optim import make_optimizer, set_learning_rate
from .resume import interrupted_message, resync_export, rng_state, run_settings, set_rng_state, starting_model
from .schedule import learning_rate
from .threads import default_threads, hold_threads, resumed_threads_notice, training_threads

EventHandler = Callable[[Any], None]


@dataclass(frozen=True)
class TrainResult:
    step: int
    train_loss: float | None  # the last step's batch loss
    val_loss: float | None  # the last evaluation's
    directory: str  # the last checkpoint's model (what `gpt2 generate --model DIR` loads)
    best_step: int | None = None  # the evaluation of the lowest validation loss ...
    best_val_loss: float | None = None
    best_directory: str | None = None  # ... whose model is here (None: none was saved)
    plot: str | None = None  # loss.png (None: not drawn)


# --- the loop ----------------------------------------------------------------------------


def train(
    data: str | Path,
    out_dir: str | Path,
    *,
    tokenizer,
    config: Config | None = None,
    init: str | None = None,
    resume: bool = False,
    options: Mapping[str, Any] | None = None,
    cache_dir: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    on_event: EventHandler | None = None,
    chat_template: str | None = None,
) -> TrainResult:
    """Train (or fine-tune, or resume) a GPT-2 on FILE_OR_DIR; the run lives in `out_dir`.

    `config` is the shape of a new model (default: the tiny preset); `init` a model to
    fine-tune; `options` are :class:`TrainConfig` fields (on resume they override the
    saved ones); `env` is torchrun's environment (os.environ) for data-parallel runs;
    `on_event` receives the events of :mod:`gpt2.training.events` (main process only).
    A JSONL of conversations or instructions is instruction tuning (:mod:`.instructions`),
    rendered by `chat_template` (a built-in name or a Jinja file; default: the model's own,
    else `plain`), which the exported directory's tokenizer_config.json then carries.

        train("input.txt", "runs/a", tokenizer=Tokenizer.gpt2(), options={"max_steps": 200})
    """
    if not str(out_dir).strip():  # Path("") is ".": an unset shell variable must not train here
        raise CheckpointError("the run directory name (--out) is empty")
    dist = distributed.from_environment(env or {})
    new_directory = not Path(out_dir).exists()
    trainer = None
    lock = None
    try:
        if dist.is_main:  # before anything in the directory is read, written or cleaned up
            checkpoint.prepare_run_directory(out_dir)
            lock = RunLock(out_dir).acquire()
            if lock.stale_owner and on_event is not None:
                on_event(
                    Notice(
                        f"the last run in {out_dir} ({lock.stale_owner}) did not exit cleanly (killed?); "
                        "the system released its lock, so this run goes on"
                    )
                )
        trainer = Trainer(
            data,
            Path(out_dir),
            tokenizer=tokenizer,
            config=config,
            init=init,
            resume=resume,
            options=dict(options or {}),
            cache_dir=cache_dir,
            dist=dist,
            on_event=on_event,
            chat_template=chat_template,
        )
        with training_threads(trainer.run_config.threads):  # the process's own count afterwards
            result = trainer.run()
        # Leave the process group together: a process that tears gloo down while its peer is
        # still finishing (the main process writes the last checkpoint) can abort in gloo's
        # threads ("terminate called without an active exception").
        distributed.barrier(dist)
        return result
    except KeyboardInterrupt:
        if trainer is None:
            raise TrainingInterrupted(interrupted_message(out_dir, None, None, 0)) from None
        raise TrainingInterrupted(
            interrupted_message(out_dir, trainer.step, trainer.saved_step, trainer.run_config.checkpoint_interval)
        ) from None
    finally:
        if lock is not None:
            lock.release()
        if trainer is None and new_directory:  # a mistake in the options leaves no empty run directory
            checkpoint.remove_if_empty(Path(out_dir))
        distributed.stop(dist)


class Trainer:
    """One run: its TrainConfig, data, model, optimizer, sampler and log."""

    def __init__(
        self,
        data,
        out: Path,
        *,
        tokenizer,
        config,
        init,
        resume,
        options,
        cache_dir,
        dist,
        on_event,
        chat_template=None,
    ) -> None:
        self.out, self.tokenizer, self.dist, self.options = out, tokenizer, dist, options
        self.init, self.template_choice = init, chat_template
        self.chat_template: str | None = None  # instruction tuning's Jinja source, for the exports
        self.train_windows: Windows | Examples  # text windows, or instruction examples (same shape)
        self.val_windows: Windows | Examples | None
        self.emit = on_event if (on_event is not None and dist.is_main) else (lambda event: None)
        checkpoint.prepare_run_directory(out)
        if dist.is_main:
            checkpoint.remove_stale_temporaries(out)
        self.resume_state = checkpoint.load_state(out) if resume else None
        if not resume and checkpoint.has_state(out):
            raise CheckpointError(
                f"{out} already holds a checkpoint; pass --resume to continue it or choose another --out"
            )
        model_config, init_params = starting_model(config, init, self.resume_state)
        train_config = run_settings(options, self.resume_state)
        if train_config.dropout is not None:
            model_config = model_config.replace(dropout=train_config.dropout)
        self.model_config = model_config
        self.run_config = run = train_config.resolved(model_config, default_threads(), fine_tune=init is not None)
        notice = resumed_threads_notice((self.resume_state or {}).get("settings", {}).get("threads"), run.threads)
        if notice is not None:
            self.emit(Notice(notice))
        self.device = self._pick_device()
        self._load_data(data, cache_dir)
        distributed.start(dist, self.device)
        self._build_model(init_params)
        if dist.is_main and self.resume_state is not None:
            notice = resync_export(
                self.out, self.resume_state, self.model_config, self.raw_model.to_params, self.chat_template
            )
            if notice is not None:
                self.emit(Notice(notice))
        self.per_step = run.batch_size * run.grad_accum * dist.world_size  # sequences per step
        self.best = BestKeeper(out, (self.resume_state or {}).get("best"), dist.is_main, self.emit)
        self.best.chat_template = self.chat_template
        self._open_log()

    # --- setting up ------------------------------------------------------------------------

    def _pick_device(self) -> torch.device:
        device = pick_device(self.run_config.device)
        if self.dist.enabled and device.type == "cuda":
            device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(device)
        autocast_context(device, self.run_config.dtype)  # fail early on an impossible dtype
        if device.type == "cpu":
            keep_freed_memory()  # the same large buffers every step: reuse them (allocator.py)
            if self.run_config.dtype == "bfloat16":
                support = cpu_bf16_support()
                if support.native is False:
                    self.emit(
                        Notice(
                            f"this CPU has no native bfloat16 arithmetic ({support.describe()}): it is emulated, "
                            "usually slower than float32 (--dtype float32)"
                        )
                    )
        return device

    def _load_data(self, data, cache_dir) -> None:
        run = self.run_config
        if is_instruction_data(data):
            self._load_instructions(data)
            return
        if self.template_choice is not None:
            raise DataError(
                f"--chat-template is for instruction data (a .jsonl of messages or instruction records); {data} is text"
            )
        tokens, self.data_key = load_tokens(
            data, self.tokenizer, cache_dir, on_tokenize=lambda files, chars: self.emit(Tokenizing(files, chars))
        )
        check_vocabulary(tokens, self.model_config.vocab_size, str(data), self.tokenizer)
        if self.resume_state is not None and self.resume_state["data_key"] != self.data_key:
            raise DataError(
                "--data is not the text this checkpoint was trained on; to train on new text, "
                f"start a new run with --init {self.out}"
            )
        train_tokens, val_tokens = split_tokens(tokens, run.val_fraction, run.context_length, name=str(data))
        self.train_windows = Windows(train_tokens, run.context_length, run.stride)
        self.val_windows = Windows(val_tokens, run.context_length, run.context_length) if len(val_tokens) else None
        self.sampler = WindowSampler(len(self.train_windows), run.seed)

    def _load_instructions(self, data) -> None:
        """Instruction tuning's data (`instructions.py`): examples in place of windows, the same sampler."""
        run = self.run_config
        # resumed without --chat-template: the template the run's export carries
        directory = self.out if self.resume_state is not None else model_directory(self.init) if self.init else None
        loaded = load_instruction_data(
            data,
            self.tokenizer,
            context=run.context_length,
            val_fraction=run.val_fraction,
            vocab_size=self.model_config.vocab_size,
            template_choice=self.template_choice,
            model_directory=directory,
        )
        self.data_key, self.chat_template = loaded.key, loaded.template.source
        if self.resume_state is not None and self.resume_state["data_key"] != self.data_key:
            raise DataError(
                "--data or --chat-template is not what this checkpoint was trained on; to train on new data, "
                f"start a new run with --init {self.out}"
            )
        self.train_windows = loaded.train
        self.val_windows = loaded.val
        self.sampler = WindowSampler(len(loaded.train), run.seed)

    def _build_model(self, init_params) -> None:
        from .models import new_model

        run, state = self.run_config, self.resume_state
        random.seed(run.seed)
        torch.manual_seed(run.seed)  # the same initial weights on every process
        self.raw_model = new_model(self.model_config)
        if init_params is not None:
            self.raw_model.load_params(init_params)
        if state is not None:
            self.raw_model.load_state_dict(state["model"])
        self.raw_model.to(self.device)
        self.optimizer = make_optimizer(
            self.raw_model, lr=run.lr, weight_decay=run.weight_decay, betas=(run.beta1, run.beta2)
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=run.dtype == "float16")
        self.step = 0
        self.saved_step: int | None = state["step"] if state is not None else None  # the last finished checkpoint
        torch.manual_seed(run.seed + self.dist.rank)  # dropout masks differ between processes
        if state is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
            self.sampler.load_state_dict(state["sampler"])
            self.step = state["step"]
            if len(state["rng"]) == self.dist.world_size:
                set_rng_state(state["rng"][self.dist.rank], self.device)
            else:
                self.emit(
                    Notice(
                        f"the checkpoint was written by {len(state['rng'])} process(es), this run has "
                        f"{self.dist.world_size}: training continues, but not bit for bit"
                    )
                )
        model = cast(torch.nn.Module, torch.compile(self.raw_model)) if run.compile else self.raw_model
        self.model = distributed.wrap(model, self.dist, self.device)

    def _open_log(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.log = MetricsLog(self.out / METRICS_FILE)
        self.plot_ok = True  # False once matplotlib turned out to be missing
        if self.dist.is_main and self.resume_state is not None:
            self.log.truncate_after(self.step)  # forget steps a killed run logged but never saved
            self.best.forget_after(self.step)  # and a best model it exported after the checkpoint
        elif self.dist.is_main:
            self.log.reset()

    # --- running ---------------------------------------------------------------------------

    def run(self) -> TrainResult:
        run = self.run_config
        self.emit(
            TrainStarted(
                self.step,
                run.max_steps,
                self.raw_model.num_parameters(),
                len(self.train_windows.tokens),
                len(self.val_windows.tokens) if self.val_windows else 0,
                self.per_step * run.context_length,
                str(self.device),
                self.dist.world_size,
                self.resume_state is not None,
                run.to_dict(),
            )
        )
        if self.step >= run.max_steps:
            self.emit(Notice(f"already at step {self.step} of {run.max_steps}; pass a larger --max-steps to go on"))
        last_loss = last_val = None
        if self.step == 0:
            last_val = self.evaluate(final=False)  # the starting point of the curve
        self.model.train()
        while self.step < run.max_steps:
            hold_threads(run.threads)  # in case other code in this process changed the count
            last_loss = self.train_step()
            final = self.step == run.max_steps
            if self.step % run.eval_interval == 0 or final:
                last_val = self.evaluate(final)
            if self.step % run.checkpoint_interval == 0 or final:
                self.save()
        return self.result(last_loss, last_val)

    def result(self, last_loss: float | None, last_val: float | None) -> TrainResult:
        best, plot = self.best.tracker, self.out / PLOT_FILE
        drawn = str(plot) if self.plot_ok and plot.is_file() else None
        return TrainResult(
            self.step, last_loss, last_val, str(self.out), best.step, best.loss, self.best.directory(), drawn
        )

    def train_step(self) -> float:
        """One optimizer step over `per_step` sequences; returns the mean loss (all processes)."""
        run, dist = self.run_config, self.dist
        started = time.perf_counter()
        lr = learning_rate(self.step, max_lr=run.lr, min_lr=run.min_lr, warmup=run.warmup_steps, total=run.max_steps)
        set_learning_rate(self.optimizer, lr)
        indices = self.sampler.take(self.per_step)  # the same list on every process
        loss_sum = torch.zeros((), device=self.device)
        for micro in range(run.grad_accum):
            first = (micro * dist.world_size + dist.rank) * run.batch_size  # this process's slice
            x, y = self.train_windows.batch(indices[first : first + run.batch_size])  # [B, T] each
            x, y = x.to(self.device), y.to(self.device)
            # DDP all-reduces gradients in backward(); only the last micro-batch needs it
            last_micro = micro == run.grad_accum - 1
            with cast(Any, self.model).no_sync() if dist.enabled and not last_micro else contextlib.nullcontext():
                with autocast_context(self.device, run.dtype):
                    _, loss = self.model(x, y)
                self.scaler.scale(loss / run.grad_accum).backward()
            loss_sum += loss.detach()
        if run.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), run.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1

        loss = distributed.mean_across(dist, loss_sum / run.grad_accum).item()
        if not math.isfinite(loss):
            raise DataError(f"the loss became {loss} at step {self.step}; try a smaller --lr")
        seconds = max(time.perf_counter() - started, 1e-9)
        tokens_per_s = self.per_step * run.context_length / seconds
        self.emit(StepDone(self.step, run.max_steps, loss, lr, tokens_per_s, seconds))
        if dist.is_main:
            self.log.append(
                {
                    "kind": "train",
                    "step": self.step,
                    "loss": loss,
                    "lr": lr,
                    "tokens": self.step * self.per_step * run.context_length,
                    "tokens_per_s": tokens_per_s,
                }
            )
        return loss

    def evaluate(self, final: bool) -> float | None:
        """Train and validation loss on fixed windows, a sample, the log and the plot."""
        run, dist = self.run_config, self.dist
        n = run.eval_batches * run.batch_size * dist.world_size  # global batches, shared out
        measure = dict(batch_size=run.batch_size, device=self.device, dtype=run.dtype, dist=dist)
        train_loss = windows_loss(
            self.raw_model, self.train_windows, spread_indices(len(self.train_windows), n), **measure
        )
        val_loss = None
        if self.val_windows is not None:
            val_loss = windows_loss(
                self.raw_model, self.val_windows, spread_indices(len(self.val_windows), n), **measure
            )
        text = None
        wants_sample = self.step > 0 and run.sample_interval and (self.step % run.sample_interval == 0 or final)
        if dist.is_main and wants_sample and run.sample_tokens:
            text = sample_text(
                self.raw_model, self.tokenizer, n_tokens=run.sample_tokens, seed=run.seed, device=self.device
            )
        perplexity = math.exp(min(val_loss, 700)) if val_loss is not None else None
        improved = self.best.observe(self.step, val_loss, train_loss)
        self.emit(Evaluated(self.step, train_loss, val_loss, perplexity, text, improved))
        if dist.is_main:
            self.log.append(
                {
                    "kind": "eval",
                    "step": self.step,
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "val_perplexity": perplexity,
                    "sample": text,
                }
            )
            self.plot_ok = _plot(self.log, self.out, self.plot_ok, self.emit)
        if improved and val_loss is not None:  # RUN/best: the model of the lowest validation loss
            self.best.keep(self.model_config, self.raw_model.to_params, self.step, val_loss)
        self.best.warn_if_rising(self.step, val_loss, train_loss)
        return val_loss

    def save(self) -> None:
        """The resumable state, then the exported model; all processes fail together."""
        rngs = distributed.gather_objects(self.dist, rng_state(self.device))
        error: CheckpointError | None = None
        if self.dist.is_main:
            try:
                checkpoint.save_state(self.out, self.training_state(rngs), previous_step=self.saved_step)
            except CheckpointError as exc:
                error = exc
            else:
                try:
                    checkpoint.export_model(
                        self.out,
                        self.model_config,
                        self.raw_model.to_params(),
                        self.step,
                        chat_template=self.chat_template,
                    )
                except CheckpointError as exc:  # the state is saved: say so, the next --resume re-exports
                    error = CheckpointError(
                        f"{str(exc).split('; ')[0]}; the training state of step {self.step} is saved in "
                        f"{self.out}: --resume continues it and exports the model again"
                    )
                else:
                    self.emit(CheckpointSaved(self.step, str(self.out)))
        if distributed.any_across(self.dist, error is not None):  # every process stops, none hangs
            raise error or CheckpointError(f"saving the checkpoint in {self.out} failed on the main process")
        self.saved_step = self.step

    def training_state(self, rngs: list) -> dict:
        """What `train_state.pt` holds: everything the next step depends on, `rngs` one per
        process (`resume.py` reads it back)."""
        return {
            "step": self.step,
            "model_config": self.model_config.to_hf_dict(),
            "dropout": self.model_config.dropout,
            # The file's key names predate TrainConfig's; they stay so older runs still resume.
            "settings_given": {**(self.resume_state or {}).get("settings_given", {}), **self.options},
            "settings": self.run_config.to_dict(),
            "model": {k: v.detach().cpu().clone() for k, v in self.raw_model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": rngs,  # one per process
            "data_key": self.data_key,
            "world_size": self.dist.world_size,
            "best": self.best.tracker.state_dict(),
        }


def _plot(log: MetricsLog, out: Path, plot_ok: bool, emit: EventHandler) -> bool:
    """Redraw loss.png; without matplotlib say so once and stop trying."""
    if not plot_ok:
        return False
    try:
        plot_losses(log.records(), out / PLOT_FILE, title=f"training loss: {out.resolve().name}")
    except ImportError:
        emit(Notice('matplotlib is not installed, so no loss.png (pip install -e ".[plot]")'))
        return False
    except OSError as exc:
        emit(Notice(f"could not write {out / PLOT_FILE}: {exc.strerror or exc}"))
    return True
