"""`gpt2 generate PROMPT`: continue a prompt, streaming the text as it is produced.

    gpt2 generate "The meaning of life is" --max-new-tokens 40 --seed 1
    echo "Once upon a time" | gpt2 generate --engine numpy --top-p 0.9
    gpt2 generate --prompt-file examples/prompt.txt --stop '\\n\\n' --repetition-penalty 1.2
    gpt2 generate "Hello" -p "Goodbye" --num-samples 2 --json   # a batch of 4
    gpt2 generate "The best way to" --num-beams 4 -n 20
    gpt2 generate "Paris is" --show-probs 5 -n 5 --temperature 0
    gpt2 generate -i                                             # = gpt2 chat

One prompt, one sample: the text streams to stdout and a summary line (tokens,
tokens/s, prefill time, the seed) goes to stderr. Several prompts or samples run
as one batch (NumPy/PyTorch engines) and print when done; `--num-beams` runs
beam search. `--json` prints one JSON object, the same keys whatever the mode:
the run's facts and a list of samples. The work is `gpt2.generation`
(`stream`, `stream_batch`, `beam_search`); this module parses and prints.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from .common import (
    add_engine_arguments,
    add_json_argument,
    engine_name,
    model_tokenizer,
    open_engine,
    plural,
    read_prompt_file,
    warn,
    words_or_stdin,
    write_text,
)
from .sampling import add_sampling_arguments, check_counts, format_probs, generation_config, ineffective, option


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="continue a prompt with GPT-2, streaming the text",
        description=(
            "Continue PROMPT ('-' or none: read stdin; more with --prompt, run as a batch) with a GPT-2 model. "
            "The text streams to stdout; a summary (tokens, tokens/s, prefill time, seed) goes to stderr. "
            "Options that change nothing in the chosen mode are warned about."
        ),
    )
    p.add_argument(
        "prompt", nargs="*", help="prompt text (words are joined by spaces); '-' or nothing reads it from stdin"
    )
    add_prompt_arguments(p)
    add_engine_arguments(p)
    add_sampling_arguments(p, batches=True)
    add_json_argument(p, "one JSON object instead of streaming")
    p.add_argument(
        "--interactive",
        "-i",
        action="store_true",
        help="an interactive session that keeps extending one text: `gpt2 chat` with these options",
    )
    p.set_defaults(run=run, resolve=as_chat)


def add_prompt_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--prompt",
        "-p",
        dest="more_prompts",
        action="append",
        default=[],
        metavar="TEXT",
        help="another prompt, generated in the same batch (repeatable)",
    )
    p.add_argument(
        "--prompt-file",
        action="append",
        default=[],
        metavar="FILE",
        help="read a prompt from FILE (UTF-8; repeatable: each file is one prompt of the batch)",
    )


def gather_prompts(args: argparse.Namespace) -> list[str]:
    """The positional prompt (or stdin when nothing else is given), the files, then --prompt's."""
    prompts = [read_prompt_file(path) for path in args.prompt_file] + list(args.more_prompts)
    if args.prompt or not prompts:
        prompts.insert(0, words_or_stdin(args.prompt))
    return prompts


def as_chat(args: argparse.Namespace, parsers: dict[str, argparse.ArgumentParser]) -> argparse.Namespace:
    """`gpt2 generate -i ...` is `gpt2 chat ...`, decided when the command line is parsed (gpt2.cli
    calls this): chat receives a namespace of its own options only, and an option of generate's that
    chat does not take (--num-beams, --json, -p, ...) is an argparse error here."""
    if not args.interactive:
        return args
    generate, chat = parsers["generate"], parsers["chat"]
    takes = {action.dest for action in chat._actions}
    extra = [
        max(action.option_strings, key=len)
        for action in generate._actions
        if action.dest not in takes and action.dest != "interactive" and action.option_strings
        if getattr(args, action.dest, action.default) != action.default
    ]
    if extra:
        generate.error(
            f"-i runs an interactive session (gpt2 chat), which extends one text: {', '.join(extra)} "
            f"cannot be used with it"
        )
    session = chat.parse_args([])  # chat's defaults, then what was given
    for dest in takes & vars(args).keys():
        setattr(session, dest, getattr(args, dest))
    session.command = args.command  # messages name what was typed: gpt2 generate
    return session


# --- generate -----------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    check_counts(args)
    tokenizer = model_tokenizer(args)
    config = generation_config(args, tokenizer)  # a bad value fails here, before any weights are read
    for note in ineffective(args):
        warn(args, note)
    engine_name(args)  # fail fast, before reading stdin or weights
    prompts = gather_prompts(args)
    prompt_ids = [tokenizer.encode(p, allowed_special="all") for p in prompts]
    engine = open_engine(args)
    run_: dict[str, Any]
    try:
        if option(args, "num_beams") > 1:
            run_ = {"mode": "beam", "samples": [_beam(engine, ids, args, config) for ids in prompt_ids]}
        elif len(prompt_ids) * option(args, "num_samples") > 1:
            run_ = _batch(engine, prompt_ids, args, config, tokenizer)
        else:
            run_ = _stream(engine, prompt_ids[0], prompts[0], args, config, tokenizer)
    finally:
        engine.close()
    per_prompt = len(run_["samples"]) // len(prompts)
    for i, sample in enumerate(run_["samples"]):
        sample["prompt"] = prompts[i // per_prompt]
        if sample["text"] is None:  # beam search: decoded here
            sample["text"] = tokenizer.decode(sample["ids"])
    _report(run_, args, engine)
    return 0


def _sample(prompt_ids: list[int], ids: list[int], **facts: Any) -> dict[str, Any]:
    """One sample's JSON record: the same keys in every mode (None where a fact does not apply)."""
    record = {
        "prompt": None,
        "prompt_ids": prompt_ids,
        "ids": ids,
        "text": None,
        "finish_reason": None,
        "seed": None,
        "logprob": None,  # beam search: the beam's; sampling with --show-probs: the sum of the steps'
        "score": None,  # beam search: logprob / length ** length_penalty
        "probs": None,  # --show-probs: one record per step
    }
    record.update(facts)
    return record


def _probs(steps: list[Any], tokenizer: Any) -> tuple[list[dict[str, Any]], float] | tuple[None, None]:
    from .sampling import step_record

    records = [step_record(s, tokenizer) for s in steps if s.logprob is not None]
    if not records:
        return None, None
    return records, sum(r["logprob"] for r in records)


def _stream(engine, ids, prompt, args, config, tokenizer) -> dict[str, Any]:
    from ..generation import stream

    if not args.json:
        write_text(prompt)
        sys.stdout.flush()
    steps: list[Any] = []
    start = time.perf_counter()
    first = start
    for step in stream(engine, ids, config, tokenizer):
        if not steps:
            first = time.perf_counter()
        steps.append(step)
        if not args.json and step.text:
            write_text(step.text)
            sys.stdout.flush()
    end = time.perf_counter()
    if not args.json:
        sys.stdout.write("\n")
        sys.stdout.flush()
    last = steps[-1] if steps else None
    new = [s.token for s in steps if not (s.finish_reason == "stop" and s.token in config.stop_ids)]
    decode_s = end - first
    probs, logprob = _probs(steps, tokenizer)
    sample = _sample(
        ids,
        new,
        text="".join(s.text for s in steps),
        finish_reason=last.finish_reason if last else "length",
        seed=config.seed,
        logprob=logprob,
        probs=probs,
    )
    return {
        "mode": "greedy" if config.sampling.greedy else "sample",
        "seed": config.seed,
        "samples": [sample],
        "seconds": end - start,
        "prefill_ms": 1e3 * (first - start) if steps else None,
        "tokens_per_s": (len(new) - 1) / decode_s if len(new) > 1 and decode_s > 0 else None,
    }


def _batch(engine, prompt_ids, args, config, tokenizer) -> dict[str, Any]:
    from ..engines.base import BatchEngine
    from ..generation import batch_decoders, stream_batch
    from ..generation.memory import check_batch_fits

    if isinstance(engine, BatchEngine):  # before a Decoder per row is built
        check_batch_fits(engine, len(prompt_ids) * option(args, "num_samples"))
    rows = [ids for ids in prompt_ids for _ in range(option(args, "num_samples"))]
    decoders = batch_decoders(engine, rows, config, tokenizer)
    steps: list[list[Any]] = [[] for _ in decoders]
    start = time.perf_counter()
    for b, step in stream_batch(engine, decoders):
        steps[b].append(step)
    seconds = time.perf_counter() - start
    total = sum(len(d.ids) for d in decoders)
    samples = []
    for d, row_steps in zip(decoders, steps):
        probs, logprob = _probs(row_steps, tokenizer)
        samples.append(
            _sample(
                d.prompt_ids,
                d.ids,
                text=d.text,
                finish_reason=d.finish_reason or "length",
                seed=d.seed,
                logprob=logprob,
                probs=probs,
            )
        )
    return {
        "mode": "greedy" if config.sampling.greedy else "sample",
        "seed": decoders[0].seed,
        "samples": samples,
        "seconds": seconds,
        "prefill_ms": None,
        "tokens_per_s": total / seconds if seconds > 0 else None,
    }


def _beam(engine, ids, args, config) -> dict[str, Any]:
    from ..generation.beam import beam_search

    start = time.perf_counter()
    best = beam_search(
        engine, ids, option(args, "num_beams"), config.max_new_tokens, option(args, "length_penalty"), config.stop_ids
    )
    seconds = time.perf_counter() - start
    return _sample(
        ids,
        best.ids,
        finish_reason="stop" if best.finished else "length",
        logprob=best.logprob,
        score=best.score,
        seconds=seconds,
    )


def _report(run_: dict[str, Any], args: argparse.Namespace, engine: Any) -> None:
    samples = run_["samples"]
    if run_["mode"] == "beam":  # one search per prompt, timed each
        seconds = sum(s.pop("seconds") for s in samples)
        run_.update(seed=None, seconds=seconds, prefill_ms=None)
        tokens = sum(len(s["ids"]) for s in samples)
        run_["tokens_per_s"] = tokens / seconds if seconds > 0 else None
    tokens = sum(len(s["ids"]) for s in samples)
    if args.json:
        record = {
            "model": args.model,
            "engine": engine.name,
            "mode": run_["mode"],
            "seed": run_["seed"],
            "tokens": tokens,
            "seconds": run_["seconds"],
            "prefill_ms": run_["prefill_ms"],
            "tokens_per_s": run_["tokens_per_s"],
            "samples": samples,
        }
        write_text(json.dumps(record, ensure_ascii=False) + "\n")
        return
    streamed = run_["prefill_ms"] is not None or (len(samples) == 1 and run_["mode"] != "beam")
    for i, s in enumerate(samples):
        if not streamed:
            if len(samples) > 1:
                print(f"--- sample {i + 1} ---")
            write_text(s["prompt"] + s["text"] + "\n")
        if s["probs"] is not None:
            if len(samples) > 1 and streamed:
                print(f"--- sample {i + 1} ---")
            write_text(format_probs(s["probs"]) + "\n")
    rate = f"{run_['tokens_per_s']:.1f} tokens/s" if run_.get("tokens_per_s") else "- tokens/s"
    prefill = (
        f", prefill {run_['prefill_ms']:.0f} ms ({plural(len(samples[0]['prompt_ids']), 'token')})"
        if run_.get("prefill_ms")
        else ""
    )
    if run_["mode"] == "beam":
        how = f", {option(args, 'num_beams')} beams"
    elif run_["mode"] == "greedy":
        how = ", greedy"
    elif len(samples) > 1:
        how = f", seeds {samples[0]['seed']}..{samples[-1]['seed']}"
    else:
        how = f", seed {run_['seed']}"
    print(
        f"{plural(tokens, 'token')} in {run_['seconds']:.2f} s, {rate}{prefill}{how} [{engine.name}, {args.model}]",
        file=sys.stderr,
    )
