"""`gpt2 generate PROMPT`: continue a prompt, streaming the text as it is produced.

    gpt2 generate "The meaning of life is" --max-new-tokens 40 --seed 1
    echo "Once upon a time" | gpt2 generate --engine numpy --top-p 0.9
    gpt2 generate "Hello" -p "Goodbye" --num-samples 2 --json   # a batch of 4
    gpt2 generate "The best way to" --num-beams 4 --temperature 0

One prompt, one sample: the text streams to stdout and a summary line
(tokens, tokens/s, prefill time) goes to stderr. Several prompts or samples
run as one batch (NumPy/PyTorch engines) and print when done; `--num-beams`
runs beam search. `--json` prints one JSON object instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from .common import add_engine_arguments, engine_name, open_engine, plural, words_or_stdin


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="continue a prompt with GPT-2, streaming the text",
        description=(
            "Continue PROMPT ('-' or none: read stdin; more with --prompt, run as a batch) with a GPT-2 model. "
            "The text streams to stdout; a summary (tokens, tokens/s, prefill time) goes to stderr."
        ),
    )
    p.add_argument(
        "prompt", nargs="*", help="prompt text (words are joined by spaces); '-' or nothing reads it from stdin"
    )
    p.add_argument(
        "--prompt",
        "-p",
        dest="more_prompts",
        action="append",
        default=[],
        metavar="TEXT",
        help="another prompt, generated in the same batch (repeatable)",
    )
    add_engine_arguments(p)
    s = p.add_argument_group("sampling")
    s.add_argument("--max-new-tokens", "-n", type=int, default=50, metavar="N", help="tokens to add (default 50)")
    s.add_argument("--temperature", type=float, default=1.0, help="0 = greedy (default 1.0)")
    s.add_argument("--top-k", type=int, default=40, help="sample among the k most likely tokens; 0 = all (default 40)")
    s.add_argument("--top-p", type=float, default=1.0, help="nucleus mass in (0, 1]; 1 = off (default 1.0)")
    s.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the sampler (the same seed picks the same tokens in every engine)",
    )
    s.add_argument("--num-samples", type=int, default=1, metavar="N", help="samples per prompt, run as a batch")
    s.add_argument("--num-beams", type=int, default=1, metavar="K", help="beam search with K beams (deterministic)")
    s.add_argument("--length-penalty", type=float, default=1.0, help="beam rank = logprob / length**penalty")
    s.add_argument("--ignore-eot", action="store_true", help="do not stop at <|endoftext|>")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of streaming")
    p.set_defaults(run=run)


# --- generate -----------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from ..errors import GenerationError
    from ..generation.sampling import SamplingConfig
    from ..tokenizer import Tokenizer

    sampling = SamplingConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    for option in ("num_samples", "num_beams"):
        if getattr(args, option) < 1:
            raise GenerationError(f"--{option.replace('_', '-')} must be >= 1, got {getattr(args, option)}")
    if args.max_new_tokens < 0:
        raise GenerationError(f"--max-new-tokens must be >= 0, got {args.max_new_tokens}")
    if args.num_beams > 1 and args.num_samples > 1:
        raise GenerationError("--num-beams and --num-samples cannot be combined (beam search is deterministic)")
    engine_name(args)  # fail fast, before reading stdin or weights
    prompts = list(args.more_prompts)
    if args.prompt or not prompts:
        prompts.insert(0, words_or_stdin(args.prompt))
    tokenizer = Tokenizer.gpt2()
    prompt_ids = [tokenizer.encode(p, allowed_special="all") for p in prompts]
    stop_ids = () if args.ignore_eot else (tokenizer.eot_token,)
    engine = open_engine(args)
    try:
        if args.num_beams > 1:
            results = [_beam(engine, ids, args, stop_ids) for ids in prompt_ids]
        elif len(prompt_ids) * args.num_samples > 1:
            results = _batch(engine, prompt_ids, args, sampling, stop_ids)
        else:
            results = [_stream(engine, prompt_ids[0], prompts[0], args, sampling, stop_ids, tokenizer)]
    finally:
        engine.close()
    for r in results:
        r["text"] = tokenizer.decode(r["ids"])
    _report(results, prompts, args, engine)
    return 0


def _stream(engine, ids, prompt, args, sampling, stop_ids, tokenizer) -> dict[str, Any]:
    from ..generation import generate
    from ..generation.sampling import Sampler
    from ..tokenizer import StreamDecoder

    sampler = Sampler(sampling, seed=args.seed)
    out: list[int] = []
    stream = StreamDecoder(tokenizer)
    if not args.json:
        sys.stdout.write(prompt)
        sys.stdout.flush()
    start = time.perf_counter()
    first = start
    for token in generate(engine, ids, args.max_new_tokens, sampler, stop_ids=stop_ids):
        if not out:
            first = time.perf_counter()
        out.append(token)
        if not args.json:
            sys.stdout.write(stream.feed(token))
            sys.stdout.flush()
    end = time.perf_counter()
    if not args.json:
        sys.stdout.write(stream.flush() + "\n")
        sys.stdout.flush()
    decode_s = end - first
    return {
        "prompt_ids": ids,
        "ids": out,
        "seconds": end - start,
        "prefill_ms": 1e3 * (first - start) if out else None,
        "tokens_per_s": (len(out) - 1) / decode_s if len(out) > 1 and decode_s > 0 else None,
    }


def _batch(engine, prompt_ids, args, sampling, stop_ids) -> list[dict[str, Any]]:
    from ..generation.batch import generate_batch
    from ..generation.sampling import Sampler

    rows = [ids for ids in prompt_ids for _ in range(args.num_samples)]
    seeds = [None if args.seed is None else args.seed + i for i in range(len(rows))]
    samplers = [Sampler(sampling, seed=seed) for seed in seeds]
    start = time.perf_counter()
    outputs = generate_batch(engine, rows, args.max_new_tokens, samplers, stop_ids)
    seconds = time.perf_counter() - start
    total = sum(len(o) for o in outputs)
    return [
        {
            "prompt_ids": ids,
            "ids": out,
            "seed": seed,
            "seconds": seconds,
            "tokens_per_s": total / seconds if seconds > 0 else None,
        }
        for ids, out, seed in zip(rows, outputs, seeds)
    ]


def _beam(engine, ids, args, stop_ids) -> dict[str, Any]:
    from ..generation.beam import beam_search

    start = time.perf_counter()
    best = beam_search(engine, ids, args.num_beams, args.max_new_tokens, args.length_penalty, stop_ids)
    seconds = time.perf_counter() - start
    return {
        "prompt_ids": ids,
        "ids": best.ids,
        "logprob": best.logprob,
        "score": best.score,
        "seconds": seconds,
        "tokens_per_s": len(best.ids) / seconds if seconds > 0 else None,
    }


def _report(results: list[dict[str, Any]], prompts: list[str], args: argparse.Namespace, engine: Any) -> None:
    meta = {"engine": engine.name, "model": args.model}
    if args.json:
        if len(results) == 1:
            print(json.dumps({**results[0], **meta}, ensure_ascii=False))
        else:
            print(json.dumps({"samples": results, **meta}, ensure_ascii=False))
        return
    if len(results) > 1 or args.num_beams > 1:
        per_prompt = len(results) // len(prompts)
        for i, r in enumerate(results):
            if len(results) > 1:
                print(f"--- sample {i + 1} ---")
            print(prompts[i // per_prompt] + r["text"])
    r = results[0]
    tokens = sum(len(x["ids"]) for x in results)
    rate = f"{r['tokens_per_s']:.1f} tokens/s" if r.get("tokens_per_s") else "- tokens/s"
    prefill = (
        f", prefill {r['prefill_ms']:.0f} ms ({plural(len(r['prompt_ids']), 'token')})" if r.get("prefill_ms") else ""
    )
    print(
        f"{plural(tokens, 'token')} in {r['seconds']:.2f} s, {rate}{prefill} [{engine.name}, {args.model}]",
        file=sys.stderr,
    )
