"""`gpt2 train`: train GPT-2 from scratch, fine-tune a loaded model, or resume a run.

    gpt2 train --data input.txt --config tiny --max-steps 500 --out runs/tiny
    gpt2 train --data input.txt --out runs/tiny --resume --max-steps 1000
    gpt2 train --data corpus/ --init gpt2 --lr 1e-4 --max-steps 200 --out runs/ft
    gpt2 train --data tasks.jsonl --init gpt2 --chat-template plain --max-steps 300 --out runs/chat
    torchrun --nproc_per_node 2 -m gpt2 train --data input.txt --out runs/ddp

The work is `gpt2.training.train`; this module parses options and draws progress.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from ..errors import Gpt2Error
from .progress import duration, is_terminal

# Options that become TrainConfig fields: (flag, field, type, help).
HYPER = (
    ("--max-steps", "max_steps", int, "optimizer steps in the whole run (default 1000)"),
    ("--batch-size", "batch_size", int, "sequences per micro-batch, per process (default 8)"),
    ("--grad-accum", "grad_accum", int, "micro-batches per optimizer step (default 1)"),
    ("--context-length", "context_length", int, "tokens per sequence, at most n_ctx (default n_ctx)"),
    ("--stride", "stride", int, "tokens between window starts (default: the context length)"),
    (
        "--lr",
        "lr",
        float,
        "peak learning rate (default by width: 6e-4 x 768 / n_embd, within [1.5e-4, 2e-3]; --init: half of it)",
    ),
    ("--min-lr", "min_lr", float, "final learning rate of the cosine decay (default lr/10)"),
    ("--warmup-steps", "warmup_steps", int, "linear warm-up steps (default max-steps/10, at most 100)"),
    ("--weight-decay", "weight_decay", float, "AdamW decay on matrices (default 0.1)"),
    ("--beta2", "beta2", float, "AdamW second-moment decay (default 0.95)"),
    ("--grad-clip", "grad_clip", float, "clip the gradient norm to this; 0 = off (default 1.0)"),
    ("--dropout", "dropout", float, "dropout probability (default: the model's, 0)"),
    ("--val-fraction", "val_fraction", float, "share of the text held out for validation (default 0.1)"),
    ("--eval-interval", "eval_interval", int, "steps between evaluations (default 100)"),
    ("--eval-batches", "eval_batches", int, "batches per evaluation (default 10)"),
    ("--sample-interval", "sample_interval", int, "steps between samples; 0 = never (default: eval interval)"),
    ("--sample-tokens", "sample_tokens", int, "tokens per sample (default 48)"),
    ("--checkpoint-interval", "checkpoint_interval", int, "steps between checkpoints; always at the end (default 500)"),
    ("--dtype", "dtype", str, "float32 | bfloat16 | float16 (CUDA): autocast precision (default float32)"),
    ("--device", "device", str, "auto | cpu | cuda | cuda:N | mps (default auto)"),
    ("--seed", "seed", int, "seed for initialisation, data order and dropout (default 1337)"),
    ("--threads", "threads", int, "CPU threads; kept on --resume, as results depend on it (default: PyTorch's count)"),
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train from scratch, fine-tune or resume (PyTorch)",
        description="Train GPT-2 on a text file or a directory of them. The run directory ends up "
        "holding config.json + model.safetensors of the last checkpoint (for `gpt2 generate --model DIR`), "
        "best/ with the model of the lowest validation loss (`--model DIR/best`), the resumable "
        "train_state.pt, metrics.jsonl and loss.png.",
    )
    p.add_argument(
        "--data",
        required=True,
        metavar="FILE_OR_DIR",
        help='UTF-8 text file, or a directory of them; a .jsonl of conversations ({"messages": [...]}) or '
        'instructions ({"instruction", "input", "output"}) is instruction tuning: the loss on the '
        "assistant's replies only",
    )
    p.add_argument(
        "--chat-template",
        metavar="NAME|FILE",
        help="instruction tuning: the chat template that writes the conversations (plain, chatml or a Jinja "
        "file; default: the --init model's own, else plain); the model directory keeps it",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="run directory")
    p.add_argument(
        "--config",
        metavar="PRESET|JSON",
        help="model size: a preset (tiny, gpt2, ...), a JSON file or a model directory (default tiny)",
    )
    p.add_argument("--init", metavar="MODEL", help="fine-tune this model (hub name such as gpt2, or a path)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    p.add_argument(
        "--qkv-bias",
        dest="qkv_bias",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="new models: bias on the query/key/value projection (default on)",
    )
    p.add_argument(
        "--position-embedding",
        choices=("learned", "sinusoidal"),
        default=None,
        help="new models: learned (GPT-2) or fixed sinusoidal positions",
    )
    for flag, field, kind, text in HYPER:
        metavar = {int: "N", float: "X"}.get(kind, field.upper())
        choices = ("float32", "bfloat16", "float16") if field == "dtype" else None
        p.add_argument(flag, dest=field, type=kind, default=None, metavar=metavar, choices=choices, help=text)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the model")
    p.add_argument("--cache-dir", metavar="DIR", help="token cache (default $XDG_CACHE_HOME/gpt2/tokens)")
    # -q (gpt2.cli): no progress bar, only errors and the final line; an error names a model as --init NAME
    p.set_defaults(run=run, quiet_here=False, model_form="--init {}")


def model_config(args: argparse.Namespace):
    """The requested model shape, or None to take it from --init / the checkpoint."""
    from ..config import Config

    flags = {
        k: v for k, v in (("qkv_bias", args.qkv_bias), ("position_embedding", args.position_embedding)) if v is not None
    }
    if args.config is None:
        if not flags:
            return None
        if args.init or args.resume:
            raise Gpt2Error(
                "--qkv-bias and --position-embedding shape a new model; they cannot change --init or --resume"
            )
        return Config.preset("tiny").replace(**flags)
    return Config.from_spec(args.config).replace(**flags)


def run(args: argparse.Namespace) -> int:
    try:
        from ..training import TrainingInterrupted, train
        from ..training.data import default_cache_dir
    except ImportError as exc:
        raise Gpt2Error(f'training needs PyTorch and NumPy ({exc}); pip install -e ".[train]"') from None
    from ..tokenizer import Tokenizer

    options = {field: getattr(args, field) for _, field, _, _ in HYPER if getattr(args, field) is not None}
    if args.compile is not None:
        options["compile"] = args.compile
    progress = Progress(sys.stderr, quiet=args.quiet)
    try:
        result = train(
            args.data,
            args.out,
            tokenizer=Tokenizer.gpt2(),
            config=model_config(args),
            init=args.init,
            resume=args.resume,
            options=options,
            cache_dir=args.cache_dir or default_cache_dir(),
            env=os.environ,
            on_event=progress,
            chat_template=args.chat_template,
        )
    except Gpt2Error:
        progress.finish()  # end the bar's line before the error's
        raise
    except TrainingInterrupted as stopped:  # Ctrl-C: say what is safe on disk, no traceback
        progress.finish()
        if os.environ.get("RANK", "0") == "0":
            print(f"gpt2 train: {stopped}", file=sys.stderr)
        return 130
    if os.environ.get("RANK", "0") == "0":
        progress.finish()
        print(summary(result), file=sys.stderr)
    return 0


def summary(result) -> str:
    """The last line: where the last and the best models are, and the loss curve. It keeps
    the shape 'trained to step N, validation loss X; ...; model in RUN (gpt2 generate --model RUN)'.

    >>> from types import SimpleNamespace as Result  # a gpt2.training.TrainResult, without PyTorch
    >>> line = summary(Result(step=300, val_loss=5.82, directory="runs/a", best_step=200, best_val_loss=5.59,
    ...                       best_directory="runs/a/best", plot="runs/a/loss.png"))
    >>> for part in line.split("; "):
    ...     print(part)
    trained to step 300, validation loss 5.8200
    the best, 5.5900 at step 200, is in runs/a/best
    loss curve in runs/a/loss.png
    model in runs/a (gpt2 generate --model runs/a)
    """
    parts = [
        f"trained to step {result.step}"
        + (f", validation loss {result.val_loss:.4f}" if result.val_loss is not None else "")
    ]
    if result.best_directory is not None and result.best_step == result.step:
        parts[0] += f" (the run's best; a copy in {result.best_directory})"
    elif result.best_directory is not None and result.best_val_loss is not None:
        parts.append(f"the best, {result.best_val_loss:.4f} at step {result.best_step}, is in {result.best_directory}")
    if result.plot is not None:
        parts.append(f"loss curve in {result.plot}")
    parts.append(f"model in {result.directory} (gpt2 generate --model {result.directory})")
    return "; ".join(parts)


# Text this long takes a noticeable while to tokenise (about a second): say what is happening.
SAY_TOKENISING_FROM = 1_000_000  # characters


class Progress:
    """Renders the trainer's events on stderr: a redrawn bar on a terminal, a line
    every 5% of the run otherwise (logs, CI). The bar shows the loss, the learning
    rate, tokens/s, ms per step, the elapsed time and the time left (from the wall
    time of this run's steps so far, evaluations and checkpoints included)."""

    def __init__(self, stream, quiet: bool = False) -> None:
        self.stream = stream
        self.quiet = quiet
        self.tty = is_terminal(stream)
        self.rate: float | None = None
        self.ms_per_step: float | None = None
        self.bar_shown = False
        self.started = time.monotonic()
        self.first_step: int | None = None  # the step this run started from (resume: not 0)
        self.first_step_at = 0.0
        self.warned: set[str] = set()

    def __call__(self, event) -> None:
        handler = getattr(self, "on_" + type(event).__name__, None)
        if handler is not None:
            handler(event)

    def line(self, text: str) -> None:
        if self.bar_shown:
            self.stream.write("\r\033[K")
            self.bar_shown = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def on_Tokenizing(self, e) -> None:
        if not self.quiet and e.characters >= SAY_TOKENISING_FROM:
            files = f"{e.files:,} files, " if e.files != 1 else ""
            self.line(f"tokenising {files}{e.characters:,} characters (cached for the next run) ...")

    def on_TrainStarted(self, e) -> None:
        self.first_step, self.first_step_at = e.step, time.monotonic()
        if self.quiet:
            return
        verb = "resuming at step" if e.resumed else "training from step"
        threads = e.train_config.get("threads")  # the result depends on it on a CPU (--threads)
        threads = f" ({threads} thread{'s' if threads != 1 else ''})" if threads and e.device == "cpu" else ""
        self.line(
            f"{verb} {e.step} of {e.max_steps}: {e.parameters / 1e6:.2f}M parameters on {e.device}{threads}"
            f"{f' x{e.world_size}' if e.world_size > 1 else ''}, {e.train_tokens:,} training and "
            f"{e.val_tokens:,} validation tokens, {e.tokens_per_step:,} tokens per step"
        )

    def timing(self, step: int, max_steps: int) -> str:
        """'elapsed 1:02  ETA 3:10' from this run's wall time per step so far."""
        now = time.monotonic()
        text = f"elapsed {duration(now - self.started)}"
        done = step - (self.first_step or 0)
        if done > 0 and step < max_steps:
            per_step = (now - self.first_step_at) / done
            text += f"  ETA {duration(per_step * (max_steps - step))}"
        return text

    def on_StepDone(self, e) -> None:
        self.rate = e.tokens_per_s if self.rate is None else 0.9 * self.rate + 0.1 * e.tokens_per_s
        ms = 1000 * e.seconds
        self.ms_per_step = ms if self.ms_per_step is None else 0.9 * self.ms_per_step + 0.1 * ms
        if self.quiet:
            return
        text = (
            f"step {e.step}/{e.max_steps}  loss {e.loss:.4f}  lr {e.lr:.2e}  {self.rate:,.0f} tok/s  "
            f"{self.ms_per_step:,.0f} ms/step  {self.timing(e.step, e.max_steps)}"
        )
        if self.tty:
            width = 24
            filled = width * e.step // e.max_steps
            self.stream.write(f"\r\033[K[{'#' * filled}{'.' * (width - filled)}] {text}")
            self.stream.flush()
            self.bar_shown = True
        elif e.step % max(1, e.max_steps // 20) == 0:
            self.line(text)

    def on_Evaluated(self, e) -> None:
        if self.quiet:
            return
        best = ", best so far" if e.best and e.step > 0 else ""
        val = (
            f", validation {e.val_loss:.4f} (perplexity {e.val_perplexity:,.1f}{best})"
            if e.val_loss is not None
            else ""
        )
        self.line(f"step {e.step}: train loss {e.train_loss:.4f}{val}")
        if e.sample:
            self.line("  sample: " + e.sample.replace("\n", "\n          "))

    def on_CheckpointSaved(self, e) -> None:
        if not self.quiet:
            self.line(f"step {e.step}: checkpoint saved in {e.directory}")

    def on_ValidationRising(self, e) -> None:
        fell = (
            f" while the training loss went from {e.best_train_loss:.4f} to {e.train_loss:.4f}"
            if e.best_train_loss is not None
            else ""
        )
        kept = f"the best model is kept in {e.best_directory}; " if e.best_directory else ""
        self.warn(
            f"the validation loss ({e.val_loss:.4f} at step {e.step}) has stayed above its best "
            f"({e.best_val_loss:.4f} at step {e.best_step}) for {e.evaluations} evaluations in a row{fell}: "
            f"the model is probably overfitting, learning the training text by heart; {kept}"
            "more text, --dropout or fewer --max-steps help"
        )

    def on_Notice(self, e) -> None:
        self.warn(e.message)

    def warn(self, message: str) -> None:
        if message not in self.warned:
            self.warned.add(message)
            self.line(f"gpt2 train: warning: {message}")

    def finish(self) -> None:
        if self.bar_shown:
            self.stream.write("\n")
            self.stream.flush()
            self.bar_shown = False
