"""The explorer's library: what each engine records, the logit lens, the next-token arithmetic,
the merges, the embeddings, the attention encoding and the comparison of engines."""

from __future__ import annotations

import math

import pytest

np = pytest.importorskip("numpy")

from gpt2.engines import load_engine  # noqa: E402
from gpt2.engines.pure import model as pure_model  # noqa: E402
from gpt2.engines.pure.ops import causal_softmax, linear, matmul, transpose  # noqa: E402
from gpt2.explore.bpe_steps import explain_text, merge_steps  # noqa: E402
from gpt2.explore.compare import compare_traces  # noqa: E402
from gpt2.explore.distribution import next_token_distribution  # noqa: E402
from gpt2.explore.embeddings import EmbeddingTable, nearest_neighbours, position_similarity  # noqa: E402
from gpt2.explore.encoding import SCALE, decode_attention, encode_attention  # noqa: E402
from gpt2.explore.lens import LensWeights, lens_logits, logit_lens  # noqa: E402
from gpt2.explore.recording import Recording, as_array  # noqa: E402
from gpt2.explore.trace import run_trace  # noqa: E402
from gpt2.generation.sampling import Sampler, SamplingConfig  # noqa: E402
from gpt2.tokenizer import Tokenizer  # noqa: E402
from gpt2.tokenizer.bpe import bpe_merge  # noqa: E402
from gpt2.tokenizer.bytes_unicode import bytes_to_token_string  # noqa: E402
from gpt2.tokenizer.pretokenize import pretokenize  # noqa: E402

IDS = Tokenizer.gpt2().encode("The quick brown fox jumps over the lazy dog, and the dog sleeps.")


def pure_attention(ids, params, config):
    """[L, H, T, T]: the attention probabilities of the pure engine's readable model
    (`gpt2.engines.pure.model`), layer by layer, with its own functions."""
    w = pure_model.nested_params(params)
    eps, c, H = config.layer_norm_epsilon, config.n_embd, config.n_head
    x = pure_model.embed(ids, w["wte.weight"], w["wpe.weight"])
    layers = []
    for i in range(config.n_layer):
        p = f"h.{i}."
        h = pure_model.norm_rows(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        qkv = linear(h, w[p + "attn.c_attn.weight"], w[p + "attn.c_attn.bias"])
        q = pure_model.split_heads([row[:c] for row in qkv], H)
        k = pure_model.split_heads([row[c : 2 * c] for row in qkv], H)
        scale = 1.0 / math.sqrt(config.head_dim)
        layers.append(
            [causal_softmax([[s * scale for s in row] for row in matmul(qh, transpose(kh))]) for qh, kh in zip(q, k)]
        )
        x = pure_model.transformer_block(x, w, i, config)
    return np.array(layers)


@pytest.fixture(scope="module")
def engines(explore_model):
    pytest.importorskip("torch")
    m = explore_model
    built = {name: load_engine(name, m.config, m.params) for name in ("pure", "numpy", "torch")}
    yield built
    for engine in built.values():
        engine.close()


@pytest.fixture(scope="module")
def traces(engines):
    return {name: run_trace(engine, IDS, all_logits=True) for name, engine in engines.items()}


@pytest.fixture(scope="module")
def lens(explore_model):
    return LensWeights.from_params(explore_model.params, explore_model.config.layer_norm_epsilon)


# --- what the engines record ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pure", "numpy", "torch"])
def test_recorded_attention_is_the_pure_models_own(explore_model, traces, name):
    m = explore_model
    expected = pure_attention(IDS, m.params, m.config)
    got = traces[name].attention
    L, H, T = m.config.n_layer, m.config.n_head, len(IDS)
    assert got.shape == expected.shape == (L, H, T, T)
    assert np.abs(got - expected).max() < 1e-5
    assert np.allclose(got.sum(axis=-1), 1.0, atol=1e-5)  # rows are distributions
    assert np.all(got[:, :, np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] == 0)  # the future is masked
    assert expected.max() > 0.5  # not a near-uniform model: the comparison can fail


@pytest.mark.parametrize("name", ["numpy", "torch", "pure"])
def test_a_recorder_does_not_change_the_logits(engines, traces, name):
    engine = engines[name]
    plain = as_array(engine.forward(IDS, engine.new_cache(), all_logits=True))
    assert np.abs(plain - traces[name].logits).max() < 1e-5


def test_recording_continues_after_cached_positions(engines):
    """After cached positions the recorder sees the new rows over every position they see."""
    for name, engine in engines.items():
        cache = engine.new_cache()
        engine.forward(IDS[:5], cache)
        recording = Recording()
        engine.forward(IDS[5:8], cache, recorder=recording)
        weights = recording.attention_weights()  # [L, H, 3, 8]
        assert weights.shape[2:] == (3, 8), name
        full = run_trace(engine, IDS[:8]).attention
        assert np.abs(weights - full[:, :, 5:8, :]).max() < 1e-5, name


def test_residual_stream_starts_with_the_embeddings(explore_model, traces):
    m = explore_model
    w = pure_model.nested_params({k: m.params[k] for k in ("wte.weight", "wpe.weight")})
    embedded = np.array(pure_model.embed(IDS, w["wte.weight"], w["wpe.weight"]))
    for trace in traces.values():
        assert trace.residual.shape == (m.config.n_layer + 1, len(IDS), m.config.n_embd)
        assert np.abs(trace.residual[0] - embedded).max() < 1e-6


# --- the logit lens ------------------------------------------------------------------------------


def test_the_last_layer_of_the_lens_is_the_models_output(traces, lens):
    trace = traces["numpy"]
    assert np.abs(lens_logits(trace.residual[-1], lens) - trace.logits).max() < 1e-4
    result = logit_lens(trace.residual[1:], lens, top=5)
    final = trace.logits.astype(np.float64)
    probs = np.exp(final - final.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    assert result.target.tolist() == np.argmax(final, -1).tolist()
    assert result.top_ids[-1, :, 0].tolist() == result.target.tolist()
    assert result.target_rank[-1].tolist() == [0] * len(IDS)
    assert np.allclose(result.top_probs[-1], np.take_along_axis(probs, result.top_ids[-1], -1), atol=1e-5)
    assert np.allclose(result.target_prob[-1], probs[np.arange(len(IDS)), result.target], atol=1e-5)


def test_every_layer_of_the_lens_matches_a_plain_computation(traces, lens):
    residual = traces["pure"].residual[1:]
    result = logit_lens(residual, lens, top=3)
    for layer in range(residual.shape[0]):
        logits = lens_logits(residual[layer], lens).astype(np.float64)  # [T, V]
        order = np.lexsort((np.arange(logits.shape[1])[None].repeat(len(IDS), 0), -logits))[:, :3]
        assert result.top_ids[layer].tolist() == order.tolist()
        logp = logits - logits.max(-1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
        target = logits[np.arange(len(IDS)), result.target]
        assert result.target_rank[layer].tolist() == (logits > target[:, None]).sum(-1).tolist()
        assert np.allclose(result.target_prob[layer], np.exp(logp[np.arange(len(IDS)), result.target]), rtol=1e-4)


def test_lens_chunks_give_the_same_answer(traces, lens, monkeypatch):
    import gpt2.explore.lens as lens_module

    residual = traces["numpy"].residual[1:]
    whole = logit_lens(residual, lens)
    monkeypatch.setattr(lens_module, "CHUNK_ROWS", 5)
    chunked = logit_lens(residual, lens)
    assert whole.top_ids.tolist() == chunked.top_ids.tolist()
    assert np.array_equal(whole.target_rank, chunked.target_rank)


# --- the next token ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sampling",
    [
        SamplingConfig(),
        SamplingConfig(temperature=0.7, top_k=40),
        SamplingConfig(temperature=1.3, top_k=0, top_p=0.9),
        SamplingConfig(temperature=0.5, top_k=10, top_p=0.5),
    ],
)
def test_kept_candidates_are_the_samplers(traces, sampling):
    logits = traces["numpy"].logits[-1]
    got = next_token_distribution(logits, sampling, top=100)
    reference = Sampler(sampling).candidates(logits.astype(np.float64).tolist())  # the list algorithm, as written
    kept = [c for c in got["candidates"] if c["kept"]]
    assert got["kept_count"] == len(reference)
    assert [c["id"] for c in kept] == [i for i, _ in reference][: len(kept)]
    total = math.fsum(p for _, p in reference)
    for c, (_, p) in zip(kept, reference):
        assert c["p_sample"] == pytest.approx(p / total, rel=1e-9)
    if got["kept_count"] <= 100:
        assert math.fsum(c["p_sample"] for c in got["candidates"]) == pytest.approx(1.0)
    model = np.exp(logits.astype(np.float64) - logits.max())
    model /= model.sum()
    assert [c["p"] for c in got["candidates"][:5]] == pytest.approx(np.sort(model)[::-1][:5].tolist(), rel=1e-6)


def test_greedy_keeps_only_the_argmax(traces):
    logits = traces["numpy"].logits[-1]
    got = next_token_distribution(logits, SamplingConfig(temperature=0), top=5)
    assert got["greedy"] and got["kept_count"] == 1
    assert [c["kept"] for c in got["candidates"]] == [True, False, False, False, False]
    assert got["candidates"][0]["id"] == int(np.argmax(logits))


# --- the tokenizer's merges ----------------------------------------------------------------------


def test_merge_steps_end_where_the_tokenizer_does(verdict):
    tok = Tokenizer.gpt2()
    for piece in sorted(set(pretokenize(verdict.read_text(encoding="utf-8"))))[:800]:
        data = piece.encode("utf-8")
        steps = merge_steps(data, tok.encoder)
        expected = [bytes_to_token_string(p) for p in bpe_merge(data, tok.encoder)]
        final = steps[-1]["parts"] if steps else [bytes_to_token_string(bytes((b,))) for b in data]
        assert final == expected, piece
        assert all(s["merged"] == s["left"] + s["right"] for s in steps)
        assert len(steps) == len(data) - len(expected)
        # A token is made from tokens older than itself, so GPT-2's merges come in rank order.
        ranks = [s["rank"] for s in steps]
        assert ranks == sorted(ranks), piece


def test_explain_text_gives_the_tokenizers_ids():
    tok = Tokenizer.gpt2()
    text = "Unbelievable, isn't it? 2½ naïve cafés\n"
    story = explain_text(tok, text)
    assert story["ids"] == tok.encode(text)
    assert "".join(p["text"] for p in story["pieces"]) == text
    for piece in story["pieces"]:
        assert len(piece["symbols"]) == len(piece["bytes"]) == len(piece["text"].encode("utf-8"))
        assert piece["parts"] == (piece["merges"][-1]["parts"] if piece["merges"] else piece["symbols"])
    cafe = next(p for p in story["pieces"] if p["text"] == " cafés")
    assert cafe["symbols"][0] == "Ġ" and len(cafe["bytes"]) == 7  # é is two bytes


# --- embeddings ----------------------------------------------------------------------------------


def test_nearest_neighbours_by_cosine(lens):
    table = EmbeddingTable(lens.wte)
    token = 11  # ","
    got = nearest_neighbours(table, token, k=8)
    wte = lens.wte.astype(np.float64)
    cosine = wte @ wte[token] / (np.linalg.norm(wte, axis=1) * np.linalg.norm(wte[token]))
    cosine[token] = -np.inf
    expected = np.argsort(-cosine, kind="stable")[:8]
    assert [i for i, _ in got] == expected.tolist()
    assert [c for _, c in got] == pytest.approx(cosine[expected].tolist(), abs=1e-5)


def test_position_similarity_is_a_cosine_matrix(explore_model):
    from gpt2.engines.numpy_engine import tensor_to_numpy

    wpe = tensor_to_numpy(explore_model.params["wpe.weight"])
    sim = position_similarity(wpe, count=8, stride=4)
    assert sim.shape == (8, 8) and np.allclose(np.diag(sim), 1.0) and np.allclose(sim, sim.T)
    a, b = wpe[4].astype(np.float64), wpe[12].astype(np.float64)
    assert sim[1, 3] == pytest.approx(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# --- the encoding of attention -------------------------------------------------------------------


def test_attention_encoding_round_trip_and_size(traces):
    w = traces["numpy"].attention  # [L, H, T, T]
    L, H, T, _ = w.shape
    packed = encode_attention(w)
    assert len(packed["data"]) == 4 * math.ceil(2 * L * H * T * (T + 1) // 2 / 3)  # base64 of the triangle alone
    back = decode_attention(packed)
    assert np.abs(back - w).max() <= 0.5 / SCALE + 1e-7
    nested = encode_attention(w, "nested")
    assert np.abs(decode_attention(nested) - w).max() <= 5e-7
    assert encode_attention(w, "none") is None


# --- three engines -------------------------------------------------------------------------------


def test_three_engines_agree_and_the_largest_difference_is_named(traces):
    out = compare_traces([traces["numpy"], traces["torch"], traces["pure"]])
    assert out["reference"] == "pure"
    assert [d["engine"] for d in out["differences"]] == ["numpy", "torch"]
    for d in out["differences"]:
        assert d["same_best_token"] == 1.0
        for quantity in ("logits", "attention", "residual"):
            assert d[quantity]["relative"] < 1e-5
    largest = out["largest"]
    assert largest["relative"] == max(
        d[q]["relative"] for d in out["differences"] for q in ("logits", "attention", "residual")
    )
    trace = traces[largest["engine"]]
    where = tuple(largest["where"])
    values = getattr(trace, largest["quantity"]).astype(np.float64)
    reference = getattr(traces["pure"], largest["quantity"]).astype(np.float64)
    assert abs(values[where] - reference[where]) == pytest.approx(largest["max_abs"])
