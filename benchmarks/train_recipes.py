"""Our default hyper-parameters against nanoGPT's published recipe, same model, same steps.

    python benchmarks/train_recipes.py --data ../shared/data/tinyshakespeare.txt --steps 300
    python benchmarks/train_recipes.py --data ../shared/data/the-verdict.txt --steps 80 --eval-interval 20
    python benchmarks/train_recipes.py --data ... --steps 300 --recipes ours --set lr=2e-3 --set beta2=0.99

Each recipe trains the same model (same shape, same initial weights, same batches
in the same order: only the hyper-parameters differ) with `gpt2.training.train`,
and the script prints the training and validation loss of every evaluation side
by side, then the final validation loss and perplexity of each.

The recipes:

- `ours`: the defaults of `gpt2 train` (nothing set; `--set KEY=VALUE` overrides);
- `nanogpt`: nanoGPT's documented hyper-parameters for a model of this size. For
  "baby networks" (n_embd <= 384) its `config/train_shakespeare_char.py`: learning
  rate 1e-3 decaying to 1e-4, AdamW beta2 0.99, 100 warm-up steps, weight decay 0.1,
  dropout 0.2, gradient clip 1.0; for GPT-2 sizes its `train.py` defaults: 6e-4
  decaying to 6e-5, beta2 0.95, 2000 warm-up steps, weight decay 0.1, no dropout.
  Its cosine decay spans the run (`lr_decay_iters = max_iters`, as its configs
  advise); the warm-up is kept as published, even when it is longer than the run;
- `nanogpt-short`: the same, with the warm-up cut to our rule (a tenth of the run,
  at most 100 steps), for a comparison that does not hinge on the warm-up alone.

Runs are single-threaded by default (`--threads`), so two can run side by side.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

from gpt2.config import Config
from gpt2.tokenizer import Tokenizer
from gpt2.training import Evaluated, TrainConfig, train
from gpt2.training.config import default_lr


def nanogpt_recipe(model: Config) -> dict[str, float]:
    """nanoGPT's published hyper-parameters for a model of this width (see the module docstring)."""
    if model.n_embd <= 384:  # config/train_shakespeare_char.py: "with baby networks can afford to go a bit higher"
        return {"lr": 1e-3, "min_lr": 1e-4, "beta2": 0.99, "warmup_steps": 100, "weight_decay": 0.1, "dropout": 0.2}
    return {"lr": 6e-4, "min_lr": 6e-5, "beta2": 0.95, "warmup_steps": 2000, "weight_decay": 0.1, "dropout": 0.0}


def recipe_options(name: str, model: Config, steps: int, overrides: dict[str, float]) -> dict[str, float]:
    if name == "ours":
        return dict(overrides)
    options = nanogpt_recipe(model)
    if name == "nanogpt-short":
        options["warmup_steps"] = min(100, steps // 10)
    elif name != "nanogpt":
        raise SystemExit(f"unknown recipe {name!r}: ours, nanogpt, nanogpt-short")
    return options


def parse_set(items: list[str]) -> dict[str, float]:
    fields = TrainConfig.__dataclass_fields__
    out: dict[str, float] = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in fields:
            raise SystemExit(f"--set {item}: {key!r} is not a training option")
        out[key] = int(value) if value.isdigit() else float(value)
    return out


def run_recipe(name: str, args: argparse.Namespace, model: Config, overrides: dict[str, float]) -> dict:
    options = {
        "max_steps": args.steps,
        "batch_size": args.batch_size,
        "eval_interval": args.eval_interval,
        "eval_batches": args.eval_batches,
        "checkpoint_interval": args.steps,
        "sample_interval": 0,
        "seed": args.seed,
        **recipe_options(name, model, args.steps, overrides),
    }
    if args.context:
        options["context_length"] = args.context
    evals: list[Evaluated] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        train(
            args.data,
            Path(tmp) / "run",
            tokenizer=Tokenizer.gpt2(),
            config=model,
            options=options,
            cache_dir=Path(tmp) / "tokens",
            on_event=lambda e: evals.append(e) if isinstance(e, Evaluated) else None,
        )
    resolved = TrainConfig.from_dict(options).resolved(model)
    return {
        "recipe": name,
        "settings": {k: getattr(resolved, k) for k in ("lr", "min_lr", "warmup_steps", "beta2", "weight_decay")}
        | {"dropout": options.get("dropout", 0.0)},
        "seconds": time.perf_counter() - started,
        "evals": [(e.step, e.train_loss, e.val_loss) for e in evals],
    }


def print_table(results: list[dict], args: argparse.Namespace, model: Config) -> None:
    print(
        f"# {Path(args.data).name}: {model.n_layer} layers x {model.n_embd} wide, {args.steps} steps of "
        f"{args.batch_size} x {args.context or model.n_ctx} tokens, seed {args.seed}, "
        f"{torch.get_num_threads()} thread(s)"
    )
    for r in results:
        s = r["settings"]
        print(
            f"# {r['recipe']:<14} lr {s['lr']:.2g} -> {s['min_lr']:.2g}, warm-up {s['warmup_steps']}, "
            f"beta2 {s['beta2']}, weight decay {s['weight_decay']}, dropout {s['dropout']}  ({r['seconds']:.0f} s)"
        )
    header = ["step"] + [f"{r['recipe']} {part}" for r in results for part in ("train", "val")]
    rows = []
    for i, (step, *_) in enumerate(results[0]["evals"]):
        row = [str(step)]
        for r in results:
            _, train_loss, val_loss = r["evals"][i]
            row += [f"{train_loss:.3f}", "-" if val_loss is None else f"{val_loss:.3f}"]
        rows.append(row)
    widths = [max(len(h), *(len(row[c]) for row in rows)) for c, h in enumerate(header)]
    print("| " + " | ".join(h.rjust(w) for h, w in zip(header, widths)) + " |")
    print("| " + " | ".join("-" * (w - 1) + ":" for w in widths) + " |")
    for row in rows:
        print("| " + " | ".join(v.rjust(w) for v, w in zip(row, widths)) + " |")
    print()
    for r in results:
        val = r["evals"][-1][2]
        if val is not None:
            print(f"{r['recipe']:<14} final validation loss {val:.3f}, perplexity {math.exp(val):,.1f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--config", default="tiny", help="preset, JSON file or model directory (default tiny)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--context", type=int, default=None, help="tokens per window (default n_ctx)")
    p.add_argument("--eval-interval", type=int, default=50)
    p.add_argument("--eval-batches", type=int, default=TrainConfig.eval_batches)
    p.add_argument("--seed", type=int, default=TrainConfig.seed)
    p.add_argument("--recipes", default="ours,nanogpt", help="comma-separated: ours, nanogpt, nanogpt-short")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one of ours")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = Config.from_spec(args.config)
    overrides = parse_set(args.set)
    print(f"default learning rate for this width: {default_lr(model)}", file=sys.stderr)
    results = [run_recipe(name, args, model, overrides) for name in args.recipes.split(",")]
    print_table(results, args, model)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
