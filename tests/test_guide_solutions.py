"""The guide's exercises (docs/learn/*.md, "Exercises"): each solution in tests/guide_solutions/
checked against an oracle: tiktoken, PyTorch, the package's own functions, or arithmetic by hand.
The answers the chapters give away ("for "hello world" the answer is [5]") are checked here too."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from gpt2.config import Config

np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch")

from guide_solutions import (  # noqa: E402  (after the skips: the solutions import torch)
    ch00_quick_start,
    ch01_tokens,
    ch02_embeddings,
    ch03_attention,
    ch04_block,
    ch05_model,
    ch06_generating,
    ch07_training,
    ch08_fine_tuning,
    ch09_fast_and_slow,
    ch10_proof,
    ch11_questions,
    ch12_instruction_tuning,
)

SIZES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")


def small_module(config: Config, seed: int = 0, noise: float = 0.1):
    """A GPT2 module with every weight perturbed, so biases and gains matter."""
    from gpt2.engines.torch.model import GPT2

    torch.manual_seed(seed)
    model = GPT2(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(noise * torch.randn_like(p))
    return model


# --- chapter 0 -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    from gpt2.weights import save_model

    config = Config.preset("tiny")
    directory = tmp_path_factory.mktemp("tiny") / "model"
    save_model(directory, config, small_module(config, noise=0.05).to_params())
    return directory


@pytest.mark.slow
def test_ch00_longer_training_lowers_the_loss(tmp_path, verdict, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ch00_quick_start.train_quick(verdict, tmp_path / "short", 20)
    ch00_quick_start.train_quick(verdict, tmp_path / "long", 60)
    short = ch00_quick_start.eval_loss(tmp_path / "short", verdict)
    long = ch00_quick_start.eval_loss(tmp_path / "long", verdict)
    assert long < short - 0.1


def test_ch00_two_engines_generate_the_same_ids(saved_tiny):
    pure = ch00_quick_start.greedy_ids(saved_tiny, "pure")
    assert len(pure) == 12
    assert ch00_quick_start.greedy_ids(saved_tiny, "numpy") == pure


def test_ch00_info_counts_the_parameters(saved_tiny):
    tiny = Config.preset("tiny")
    assert ch00_quick_start.info_parameters(saved_tiny) == tiny.num_parameters() == 7_259_008
    assert 0.88 < ch00_quick_start.token_table_share(tiny) < 0.89


# --- chapter 1 -------------------------------------------------------------------------------------


def test_ch01_single_token_spellings(tiktoken_gpt2):
    words = ["hello", " hello", "Hello", " Hello", "HELLO"]
    answer = ch01_tokens.single_token_spellings(words)
    assert answer == [w for w in words if len(tiktoken_gpt2.encode(w)) == 1]
    assert answer == ["hello", " hello", "Hello", " Hello"]


def test_ch01_longest_token(tiktoken_gpt2):
    from gpt2.tokenizer import Tokenizer

    token, data = ch01_tokens.longest_token()
    assert len(data) == max(len(b) for b in Tokenizer.gpt2().encoder)
    assert tiktoken_gpt2.decode_single_token_bytes(token) == data
    assert data.decode("utf-8").startswith("ÃÂ")  # mojibake: UTF-8 read as Latin-1, re-encoded


def test_ch01_safe_cuts(tiktoken_gpt2):
    assert ch01_tokens.safe_cuts("hello world") == [5]
    for text in ("The tokenizer's job", "hello world", "Once upon a time, 2½ apples!"):
        whole = tiktoken_gpt2.encode(text)
        oracle = [
            i for i in range(1, len(text)) if tiktoken_gpt2.encode(text[:i]) + tiktoken_gpt2.encode(text[i:]) == whole
        ]
        cuts = ch01_tokens.safe_cuts(text)
        assert cuts == oracle
        if not text.isascii():
            continue
        boundaries = {
            sum(len(tiktoken_gpt2.decode_single_token_bytes(t)) for t in whole[:n]) for n in range(len(whole))
        }
        assert set(cuts) <= boundaries  # a safe cut is always between two tokens of the whole


# --- chapter 2 -------------------------------------------------------------------------------------


def test_ch02_table_share():
    from gpt2.params import param_shapes

    shares = [ch02_embeddings.table_share(Config.preset(n)) for n in SIZES]
    assert shares == sorted(shares, reverse=True)
    for name in (*SIZES, "tiny"):
        c = Config.preset(name)
        shapes = param_shapes(c)
        expected = (math.prod(shapes["wte.weight"]) + math.prod(shapes["wpe.weight"])) / c.num_parameters()
        assert ch02_embeddings.table_share(c) == pytest.approx(expected, rel=1e-12)
    assert ch02_embeddings.table_share(Config.preset("tiny")) > 0.85


def test_ch02_offset_dot():
    from gpt2.params import sinusoidal_positions

    pe = sinusoidal_positions(64, 16)
    for k in range(1, 12):
        for p in range(64 - k):
            assert sum(a * b for a, b in zip(pe[p], pe[p + k])) == pytest.approx(
                ch02_embeddings.offset_dot(k, 16), abs=1e-9
            )


def test_ch02_random_directions_are_nearly_orthogonal():
    largest = ch02_embeddings.max_random_cosine()
    estimate = math.sqrt(2 * math.log(2e6)) / math.sqrt(768)
    assert largest < 0.25
    assert abs(largest - estimate) < 0.3 * estimate


# --- chapter 3 -------------------------------------------------------------------------------------

Q = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
K = [[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
V = [[1.0, 2.0], [3.0, 0.0], [0.0, 4.0]]


def test_ch03_last_row_by_hand():
    from gpt2.engines.pure.ops import causal_softmax, matmul, transpose

    scores = [[s / math.sqrt(2) for s in row] for row in matmul(Q, transpose(K))]
    assert ch03_attention.last_row_weights() == pytest.approx(causal_softmax(scores)[2], abs=1e-15)


def test_ch03_causality():
    from gpt2.engines.pure.model import multi_head_attention, nested_params

    config = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=16, n_ctx=8)
    w = nested_params(small_module(config).to_params())
    x = [[math.sin(t + i) for i in range(8)] for t in range(5)]
    changed = [row[:] for row in x]
    changed[4] = [v + 1.0 for v in changed[4]]
    a = multi_head_attention(x, w, "h.0.attn.", 2)
    b = multi_head_attention(changed, w, "h.0.attn.", 2)
    assert a[:4] == b[:4] and a[4] != b[4]


def test_ch03_only_the_mask_knows_the_order():
    from gpt2.engines.pure.model import attention

    rng = random.Random(0)
    q, k, v = ([[rng.gauss(0, 1) for _ in range(4)] for _ in range(5)] for _ in range(3))
    order = [3, 0, 4, 1, 2]
    p = ch03_attention.permute
    unmasked = ch03_attention.attention_unmasked
    assert np.allclose(unmasked(p(q, order), p(k, order), p(v, order)), p(unmasked(q, k, v), order), atol=1e-12)
    masked = attention(p(q, order), p(k, order), p(v, order))
    assert not np.allclose(masked, p(attention(q, k, v), order), atol=1e-6)


# --- chapter 4 -------------------------------------------------------------------------------------


def test_ch04_block_parameter_count():
    from gpt2.params import block_parameters

    for c in (8, 768, 1024, 1280, 1600):
        assert ch04_block.block_parameter_count(c) == 12 * c * c + 13 * c == block_parameters(c)


def test_ch04_post_norm_output_is_normalised():
    from gpt2.engines.torch.model import GPT2

    torch.manual_seed(0)
    block = GPT2(Config(n_layer=12, n_embd=32, n_head=4, vocab_size=100, n_ctx=32)).double().h[0]
    x = torch.randn(1, 4, 32, dtype=torch.float64)
    with torch.no_grad():
        h = block.ln_1(x + block.attn(x))
        post = block.ln_2(h + block.mlp(h))
        pre = block(x)
    assert post.mean(dim=-1).abs().max() < 1e-6
    assert (post.var(dim=-1, unbiased=False) - 1).abs().max() < 1e-4  # eps 1e-5 in the denominator
    assert (pre.var(dim=-1, unbiased=False) - 1).abs().max() > 1e-2


def test_ch04_gelu_minimum():
    x, value = ch04_block.gelu_minimum()
    assert -0.76 < x < -0.74 and -0.171 < value < -0.169
    t = torch.tensor([x - 0.002, x + 0.002], dtype=torch.float64, requires_grad=True)
    torch.nn.functional.gelu(t, approximate="tanh").sum().backward()
    assert t.grad[0] < 0 < t.grad[1]  # the slope changes sign across the minimum


# --- chapter 5 -------------------------------------------------------------------------------------


def test_ch05_parameter_count():
    from gpt2.params import param_shapes

    for name in (*SIZES, "tiny"):
        c = Config.preset(name)
        assert ch05_model.parameter_count(c) == c.num_parameters() == sum(map(math.prod, param_shapes(c).values()))


def test_ch05_weight_bytes_match_a_file(tmp_path):
    from gpt2.weights import save_model

    config = Config.preset("tiny")
    save_model(tmp_path, config, small_module(config, noise=0.0).to_params())
    raw = (tmp_path / "model.safetensors").read_bytes()
    header = int.from_bytes(raw[:8], "little")
    assert len(raw) == 8 + header + ch05_model.weight_bytes(config, 4)
    assert ch05_model.weight_bytes(Config.preset("gpt2"), 2) == 248_879_616


def test_ch05_safetensors_index(tmp_path):
    from gpt2.weights import save_model
    from gpt2.weights.safetensors import read_header

    config = Config(n_layer=2, n_embd=16, n_head=2, vocab_size=50, n_ctx=8)
    save_model(tmp_path, config, small_module(config).to_params())
    path = tmp_path / "model.safetensors"
    index = ch05_model.safetensors_index(path)
    entries = read_header(path).entries
    assert index == {e.name: (e.dtype, e.shape, e.begin, e.end) for e in entries}
    spans = sorted((begin, end) for _, _, begin, end in index.values())
    assert spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


# --- chapter 6 -------------------------------------------------------------------------------------

LOGITS = [2.0, 1.0, 0.5, 0.1, -1.0]


def test_ch06_min_p():
    from gpt2.engines.pure.ops import softmax

    kept = ch06_generating.min_p_candidates(LOGITS, 0.2)
    assert [t for t, _ in kept] == [0, 1, 2]
    assert [t for t, _ in ch06_generating.min_p_candidates(LOGITS, 0.3)] == [0, 1]
    assert math.fsum(p for _, p in kept) == pytest.approx(1.0, abs=1e-15)
    rng = random.Random(0)
    for _ in range(100):
        logits = [rng.gauss(0, 2) for _ in range(20)]
        probs = softmax(logits)
        kept = ch06_generating.min_p_candidates(logits, 0.1)
        assert {t for t, _ in kept} == {i for i, p in enumerate(probs) if p >= 0.1 * max(probs) - 1e-15}
        assert kept[0][0] == max(range(20), key=logits.__getitem__)


def test_ch06_kv_cache_bytes():
    from gpt2.engines import load_engine
    from gpt2.params import init_params

    config = Config(n_layer=3, n_embd=16, n_head=2, vocab_size=50, n_ctx=24)
    cache = load_engine("numpy", config, init_params(config)).new_cache()
    assert cache.keys.nbytes + cache.values.nbytes == ch06_generating.kv_cache_bytes(config, config.n_ctx, 4)
    assert ch06_generating.kv_cache_bytes(Config.preset("gpt2"), 1024, 4) == 75_497_472


def test_ch06_greedy_in_disguise():
    from gpt2.engines.pure.ops import softmax
    from gpt2.generation import Sampler, SamplingConfig

    rng = random.Random(0)
    for logits in [LOGITS] + [[rng.gauss(0, 1) for _ in range(30)] for _ in range(100)]:
        best = max(range(len(logits)), key=logits.__getitem__)
        assert [t for t, _ in Sampler(SamplingConfig(top_k=1, temperature=1.0)).candidates(logits)] == [best]
        limit = ch06_generating.largest_greedy_top_p(logits)
        assert limit == pytest.approx(max(softmax(logits)), rel=1e-12)
        assert [t for t, _ in Sampler(SamplingConfig(top_p=limit * (1 - 1e-9))).candidates(logits)] == [best]
        assert len(Sampler(SamplingConfig(top_p=min(1.0, limit * 1.01))).candidates(logits)) > 1


# --- chapter 7 -------------------------------------------------------------------------------------


def test_ch07_gradient_accumulation():
    model = small_module(Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_ctx=32))
    ids = torch.randint(0, 100, (8, 17), generator=torch.Generator().manual_seed(1))
    x, y = ids[:, :-1], ids[:, 1:]
    whole = ch07_training.gradients(model, x, y, 1)
    halves = ch07_training.gradients(model, x, y, 2)
    for name, g in whole.items():
        assert torch.allclose(g, halves[name], atol=1e-6), name


def test_ch07_perplexity_at_init():
    for vocab in (100, 1_000, 50_257):
        ppl = ch07_training.perplexity_at_init(vocab)
        assert abs(ppl - vocab) < 0.1 * vocab


def test_ch07_adam_moves_everything_alike():
    lr = 1e-3
    grads, moves = ch07_training.first_step_moves(lr)
    big = grads > 1e-6
    assert big.sum() > 0.9 * len(grads)
    assert (moves[big] >= 0.99 * lr * (1 - 1e-4)).all() and (moves[big] <= lr * (1 + 1e-4)).all()
    assert (moves[grads == 0] == 0).all()


# --- chapter 8 -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory, shakespeare, verdict):
    work = tmp_path_factory.mktemp("fine-tuning")
    cache = work / "cache"
    base = ch08_fine_tuning.train_base(shakespeare, work / "base", cache)
    tuned = ch08_fine_tuning.fine_tune(base, verdict, work / "tuned", cache)
    sample = work / "shakespeare-sample.txt"
    sample.write_text(Path(shakespeare).read_text(encoding="utf-8")[:10_000], encoding="utf-8")
    return base, tuned, sample, cache


@pytest.mark.slow
def test_ch08_forgetting(fine_tuned, verdict):
    base, tuned, sample, cache = fine_tuned
    loss = ch08_fine_tuning.loss_on
    assert loss(tuned, sample, cache) > loss(base, sample, cache)  # worse at Shakespeare: it forgot
    assert loss(tuned, verdict, cache) < loss(base, verdict, cache)  # better at the new text


@pytest.mark.slow
def test_ch08_every_tensor_moved(fine_tuned):
    base, tuned, _, _ = fine_tuned
    changes = ch08_fine_tuning.relative_changes(base, tuned)
    assert len(changes) == 2 + 12 * 2 + 2 and min(changes.values()) > 0


def test_ch08_perplexity_from_loss(saved_tiny, verdict, tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    result = json.loads(ch00_quick_start.run("eval", "--model", str(saved_tiny), "--data", str(verdict), "--json"))
    assert result["perplexity"] == pytest.approx(math.exp(result["loss"]), rel=1e-12)
    assert result["tokens"] == result["sequences"] * result["context_length"]


# --- chapter 9 -------------------------------------------------------------------------------------


def test_ch09_bytes_and_roofline():
    from gpt2.params import param_shapes

    small = Config.preset("gpt2")
    assert ch09_fast_and_slow.bytes_per_token(small, 4) == 494_616_576
    shapes = param_shapes(small)
    read = sum(math.prod(s) for name, s in shapes.items() if name != "wpe.weight") + small.n_embd
    assert ch09_fast_and_slow.bytes_per_token(small, 4) == 4 * read
    assert ch09_fast_and_slow.roofline(small, 25.9e9, 4) == pytest.approx(52.36, abs=0.01)


def test_ch09_ridge_batch():
    peak, bandwidth = 183e9, 25.9e9
    b = ch09_fast_and_slow.ridge_batch(peak, bandwidth)
    compute, memory = (lambda n: 2 * n / peak), 4 / bandwidth
    assert compute(b) >= memory > compute(b - 1)
    assert b == 15


def test_ch09_cache_outweighs_model():
    small = Config.preset("gpt2")
    b = ch09_fast_and_slow.cache_outweighs_model_at(small)
    per_row = ch06_generating.kv_cache_bytes(small, small.n_ctx, 4)
    assert b * per_row > 4 * small.num_parameters() >= (b - 1) * per_row
    assert b == 7


# --- chapter 10 ------------------------------------------------------------------------------------


def test_ch10_spacing():
    eps32 = float(np.finfo(np.float32).eps)
    for x in (1.0, 1000.0, 1e6, 123.456):
        ratio = float(np.spacing(np.float32(x))) / x
        assert eps32 / 2 <= ratio <= eps32
    assert float(np.spacing(np.float32(1e6))) == 0.0625  # larger than 1e-4: an absolute tolerance means nothing


def test_ch10_max_rel_error():
    from gpt2.verify import compare

    rng = random.Random(0)
    for _ in range(20):
        a = [[rng.gauss(0, 1) for _ in range(5)] for _ in range(3)]
        b = [[v + rng.gauss(0, 1e-6) for v in row] for row in a]
        ours = ch10_proof.max_rel_error(a, b)
        assert ours == pytest.approx(compare(a, b)[1], rel=1e-12)
        scaled = ch10_proof.max_rel_error([[1000 * v for v in r] for r in a], [[1000 * v for v in r] for r in b])
        assert scaled == pytest.approx(ours, rel=1e-9)


def test_ch10_relu_fails_the_tolerance():
    from gpt2.engines.pure.model import mlp, nested_params

    config = Config(n_layer=1, n_embd=8, n_head=2, vocab_size=16, n_ctx=8)
    w = nested_params(small_module(config).to_params())
    rng = random.Random(0)
    x = [[rng.gauss(0, 1) for _ in range(8)] for _ in range(4)]
    error = ch10_proof.max_rel_error(ch10_proof.relu_mlp(x, w, "h.0.mlp."), mlp(x, w, "h.0.mlp."))
    assert error > 100 * 1e-4


# --- chapter 11 ------------------------------------------------------------------------------------


def test_ch11_non_persistent_buffer():
    m = ch11_questions.MaskedAttention(4)
    assert "mask" not in m.state_dict() and "mask" in dict(m.named_buffers())
    m = m.double()
    assert m.proj.weight.dtype == torch.float64 and m.mask.dtype == torch.bool


def test_ch11_sampling_repeats_less_than_greedy():
    from gpt2.engines import load_engine
    from gpt2.generation import GenerationConfig, stream

    model = ch11_questions.chapter_model()
    engine = load_engine("numpy", model.config, model.to_params())

    def distinct(**options):
        settings = GenerationConfig(max_new_tokens=30, stop_ids=(), **options)
        return len({s.token for s in stream(engine, [1, 2, 3, 4], settings)})

    greedy = distinct(temperature=0.0)
    assert all(distinct(temperature=1.0, seed=seed) > greedy for seed in range(5))


def test_ch11_attention_weights_match_torch():
    from gpt2.engines.pure.model import embed, nested_params, norm_rows, split_heads
    from gpt2.engines.pure.ops import causal_softmax, linear, matmul, transpose

    model = ch11_questions.chapter_model()
    config = model.config
    w = nested_params(model.to_params())
    ids = [5, 6, 7, 8, 9, 10]
    x = embed(ids, w["wte.weight"], w["wpe.weight"])
    h = norm_rows(x, w["h.0.ln_1.weight"], w["h.0.ln_1.bias"], config.layer_norm_epsilon)
    qkv = linear(h, w["h.0.attn.c_attn.weight"], w["h.0.attn.c_attn.bias"])
    C = config.n_embd
    for head in range(config.n_head):
        q = split_heads([row[:C] for row in qkv], config.n_head)[head]
        k = split_heads([row[C : 2 * C] for row in qkv], config.n_head)[head]
        ours = causal_softmax([[s / math.sqrt(config.head_dim) for s in row] for row in matmul(q, transpose(k))])
        theirs = ch11_questions.attention_weights_torch(model, ids, head=head)
        assert torch.allclose(theirs.double(), torch.tensor(ours, dtype=torch.float64), atol=1e-6)


# --- chapter 12 ------------------------------------------------------------------------------------

CH12_MESSAGES = [{"role": "user", "content": "Reverse the word.\n\ntrain"}, {"role": "assistant", "content": "niart"}]


def test_ch12_learnt_pieces_of_two_templates():
    pytest.importorskip("jinja2")
    from gpt2.chat_template import builtin_template
    from gpt2.tokenizer import Tokenizer
    from gpt2.training.instructions import encode_conversation

    tok = Tokenizer.gpt2()
    pieces = ch12_instruction_tuning.learnt_pieces
    assert pieces(encode_conversation(CH12_MESSAGES, builtin_template("plain"), tok), tok) == [" niart\nUser:"]
    assert pieces(encode_conversation(CH12_MESSAGES, builtin_template("chatml"), tok), tok) == ["niart<|im_end|>"]


def test_ch12_is_correct():
    check = ch12_instruction_tuning.is_correct
    assert check("Reverse the word.\n\namber", " rebma") and not check("Reverse the word.\n\namber", "amber")
    assert check("Write the word in capital letters.\n\nmaple", "MAPLE")
    assert not check("Write the word in capital letters.\n\nmaple", "MAPL")
    assert check("What is 7 + 8?", " 15") and not check("What is 7 + 8?", "14")


def test_ch12_unmasked_learns_every_target():
    from gpt2.training.instructions import Example, masked_targets

    example = Example((5, 6, 7, 8), (False, False, True, True))
    assert masked_targets(*_ids_learnt(ch12_instruction_tuning.unmasked(example))).tolist() == [6, 7, 8]


def _ids_learnt(example):
    return example.ids, example.learnt
