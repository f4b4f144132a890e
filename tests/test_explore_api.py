"""The explorer's JSON API through FastAPI's test client: every answer against the schema, the
numbers against the engines and `gpt2 generate`, and a clear 400 for every bad request."""

from __future__ import annotations

import json
import math

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("fastapi")
pytest.importorskip("httpx")
jsonschema = pytest.importorskip("jsonschema")

from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from gpt2.cli import main  # noqa: E402
from gpt2.engines import load_engine  # noqa: E402
from gpt2.explore.api import explore_router  # noqa: E402
from gpt2.explore.app import create_app  # noqa: E402
from gpt2.explore.encoding import decode_attention  # noqa: E402
from gpt2.explore.explorer import Explorer  # noqa: E402
from gpt2.explore.requests import MAX_TEXT_CHARS  # noqa: E402
from gpt2.explore.schema import ANSWERS, load_schema, validate  # noqa: E402
from gpt2.generation import Sampler, SamplingConfig, generate  # noqa: E402
from gpt2.tokenizer import Tokenizer  # noqa: E402
from test_explore_trace import pure_attention  # noqa: E402

TEXT = "It was the best of times, it was the worst of times"
TOK = Tokenizer.gpt2()


@pytest.fixture(scope="module")
def explorer(explore_model):
    m = explore_model
    ex = Explorer(m.config, m.params, name="small", engine="numpy")
    yield ex
    ex.close()


@pytest.fixture(scope="module")
def client(explorer):
    with TestClient(create_app(explorer)) as c:
        yield c


def ok(response, kind):
    assert response.status_code == 200, response.text
    body = response.json()
    validate(body, kind)
    return body


def refused(response, *words, status=400):
    assert response.status_code == status, response.text
    body = response.json()
    validate(body, "error")
    message = body["error"]["message"]
    for word in words:
        assert word in message, message
    return message


def test_the_schema_is_a_valid_json_schema():
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert set(ANSWERS) <= set(schema["$defs"])


def test_info(client, explore_model):
    info = ok(client.get("/api/info"), "info")
    assert info["model"]["n_layer"] == explore_model.config.n_layer
    assert info["engines"]["default"] == "numpy"
    assert info["limits"]["max_tokens"] == min(128, explore_model.config.n_ctx)


# --- the trace -----------------------------------------------------------------------------------


def test_trace_of_text(client, explore_model):
    c = explore_model.config
    trace = ok(client.post("/api/trace", json={"text": TEXT}), "trace")
    ids = TOK.encode(TEXT)
    T = len(ids)
    assert [t["id"] for t in trace["tokens"]] == ids
    assert "".join(t["text"] for t in trace["tokens"]) == TEXT
    assert bytes(b for t in trace["tokens"] for b in t["bytes"]) == TEXT.encode()
    assert trace["attention"]["shape"] == [c.n_layer, c.n_head, T, T]
    assert len(trace["logit_lens"]["cells"]) == c.n_layer and len(trace["logit_lens"]["cells"][0]) == T
    assert len(trace["residual_norms"]) == c.n_layer + 1 and len(trace["residual_norms"][0]) == T
    assert trace["computed_by"]["attention"] == "gpt2.engines.numpy_engine.attend"


def test_attention_rows_sum_to_one_and_equal_the_pure_engines(client, explore_model):
    m = explore_model
    trace = ok(client.post("/api/trace", json={"text": TEXT}), "trace")
    attention = decode_attention(trace["attention"])
    assert np.abs(attention.sum(axis=-1) - 1.0).max() < 1e-3  # 16-bit fixed point: T * 7.6e-6 at most
    expected = pure_attention(TOK.encode(TEXT), m.params, m.config)
    assert np.abs(attention - expected).max() < 2e-5
    nested = ok(client.post("/api/trace", json={"text": TEXT, "attention": "nested"}), "trace")
    assert np.abs(np.array(nested["attention"]["data"]) - expected).max() < 1e-5
    pure = ok(client.post("/api/trace", json={"text": TEXT, "engine": "pure", "attention": "nested"}), "trace")
    assert np.abs(np.array(pure["attention"]["data"]) - expected).max() < 1e-6
    assert pure["computed_by"]["attention"] == "gpt2.engines.pure.engine.PureEngine.attend"


def test_the_last_layer_of_the_lens_equals_the_final_logits(client, explore_model):
    m = explore_model
    ids = TOK.encode(TEXT)
    trace = ok(client.post("/api/trace", json={"ids": ids, "lens_top": 3}), "trace")
    engine = load_engine("numpy", m.config, m.params)
    logits = engine.forward(ids, engine.new_cache(), all_logits=True).astype(np.float64)  # [T, V]
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    last = trace["logit_lens"]["cells"][-1]
    best = np.argsort(-logits, axis=-1, kind="stable")[:, :3]
    for t, cell in enumerate(last):
        assert [e["id"] for e in cell["top"]] == best[t].tolist()
        assert [e["p"] for e in cell["top"]] == pytest.approx(np.exp(logp[t, best[t]]).tolist(), rel=1e-4)
        assert cell["target_rank"] == 0
        assert trace["logit_lens"]["target"][t]["id"] == best[t, 0]
    # the next-token distribution is the last position's, under temperature 1 and no filter
    probs = [c["p"] for c in trace["next_token"]["candidates"][:3]]
    assert probs == pytest.approx(np.exp(logp[-1, best[-1]]).tolist(), rel=1e-5)


def test_next_token_controls(client):
    ids = TOK.encode(TEXT)
    base = ok(client.post("/api/next", json={"ids": ids, "temperature": 1.0, "top_k": 0}), "next")
    hot = ok(client.post("/api/next", json={"ids": ids, "temperature": 2.0, "top_k": 0}), "next")
    cold = ok(client.post("/api/next", json={"ids": ids, "temperature": 0.5, "top_k": 5, "top_p": 0.6}), "next")
    assert base["candidates"][0]["p_sample"] > hot["candidates"][0]["p_sample"]  # heat flattens
    assert cold["kept_count"] <= 5 and cold["top_k_count"] == 5
    assert [c["kept"] for c in cold["candidates"]][: cold["kept_count"] + 1] == [True] * cold["kept_count"] + [False]
    assert sum(c["p_sample"] for c in cold["candidates"]) == pytest.approx(1.0)
    greedy = ok(client.post("/api/next", json={"ids": ids, "temperature": 0}), "next")
    assert greedy["greedy"] and greedy["kept_count"] == 1


# --- steps, branches and going back agree with `gpt2 generate` -----------------------------------


def step(client, ids, **fields):
    return ok(client.post("/api/step", json={"ids": ids, "trace": False, **fields}), "step")


def test_three_sampled_steps_are_gpt2_generate(client, explore_model, capsys):
    prompt = "Once upon a time"
    ids, draw, tokens = TOK.encode(prompt), 0, []
    for _ in range(3):
        answer = step(client, ids, seed=7, draw=draw, temperature=0.9, top_p=0.95)
        assert answer["ids"][:-1] == ids and not answer["chosen"] and answer["seed"] == 7
        assert answer["draw"] == draw + 1
        ids, draw = answer["ids"], answer["draw"]
        tokens.append(answer["token"]["id"])
    code = main(
        ["generate", prompt, "--model", str(explore_model.directory), "--engine", "numpy", "-n", "3", "--seed", "7"]
        + ["--temperature", "0.9", "--top-p", "0.95", "--ignore-eot", "--json"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["samples"][0]["ids"] == tokens


def test_going_back_and_stepping_again_gives_the_same_token(client):
    ids = TOK.encode("The king said")
    first = step(client, ids, seed=3, draw=0)
    second = step(client, first["ids"], seed=3, draw=first["draw"])
    again = step(client, first["ids"], seed=3, draw=first["draw"])  # back one, then step
    assert again["ids"] == second["ids"] and again["draw"] == second["draw"]


def test_a_branch_continues_as_generate_from_the_branched_sequence(client, explorer):
    ids = TOK.encode("The king said")
    chosen = step(client, ids, token=TOK.encode(" no")[0], seed=11, draw=5)
    assert chosen["chosen"] and chosen["ids"] == ids + TOK.encode(" no") and chosen["draw"] == 5  # nothing drawn
    branch, draw, tokens = chosen["ids"], 0, []
    for _ in range(3):
        answer = step(client, branch, seed=11, draw=draw)
        branch, draw = answer["ids"], answer["draw"]
        tokens.append(answer["token"]["id"])
    sampler = Sampler(SamplingConfig(temperature=1.0, top_k=40), seed=11)  # gpt2 generate's defaults
    assert list(generate(explorer.engine("numpy"), chosen["ids"], 3, sampler, stop_ids=())) == tokens


def test_a_greedy_step_draws_nothing(client, explorer):
    ids = TOK.encode("The king said")
    answer = step(client, ids, temperature=0, seed=1, draw=4)
    engine = explorer.engine("numpy")
    assert answer["draw"] == 4
    assert answer["token"]["id"] == int(np.argmax(engine.forward(ids, engine.new_cache())))


def test_a_tiny_temperature_is_greedy_in_trace_next_and_step(client, explorer):
    ids = TOK.encode("The king said")  # 1 / 1e-320 overflows: greedy, by SamplingConfig.greedy, not a 500
    engine = explorer.engine("numpy")
    best = int(np.argmax(engine.forward(ids, engine.new_cache())))
    for tiny in ({"temperature": 1e-320}, {"temperature": 5e-324, "top_k": 3, "top_p": 0.5}):
        shown = ok(client.post("/api/next", json={"ids": ids, **tiny}), "next")
        assert shown["greedy"] and [c["id"] for c in shown["candidates"] if c["kept"]] == [best]
        traced = ok(client.post("/api/trace", json={"ids": ids, **tiny}), "trace")["next_token"]
        assert traced["greedy"] and traced["candidates"][0]["kept"] and traced["kept_count"] == 1
        answer = step(client, ids, seed=1, draw=4, **tiny)
        assert answer["token"]["id"] == best and answer["draw"] == 4  # greedy draws nothing


def test_a_step_can_return_the_new_trace(client):
    answer = ok(client.post("/api/step", json={"text": "Hello", "seed": 1}), "step")
    assert [t["id"] for t in answer["trace"]["tokens"]] == answer["ids"]


def test_a_step_without_a_seed_says_which_it_drew(client):
    answer = step(client, TOK.encode("Hello"))
    assert isinstance(answer["seed"], int)
    again = step(client, TOK.encode("Hello"), seed=answer["seed"])
    assert again["token"] == answer["token"]


# --- embeddings, merges, engines, source ---------------------------------------------------------


def test_neighbours(client):
    by_text = ok(client.post("/api/embeddings/neighbours", json={"text": " king", "k": 5}), "neighbours")
    by_id = ok(client.post("/api/embeddings/neighbours", json={"id": by_text["token"]["id"], "k": 5}), "neighbours")
    assert by_text == by_id and len(by_text["neighbours"]) == 5
    cosines = [n["cosine"] for n in by_text["neighbours"]]
    assert cosines == sorted(cosines, reverse=True)
    refused(client.post("/api/embeddings/neighbours", json={"text": " unbelievably long words"}), "one token")


def test_positions(client, explore_model):
    answer = ok(client.post("/api/embeddings/positions", json={"count": 100, "stride": 2}), "positions")
    n = (explore_model.config.n_ctx - 1) // 2 + 1  # only positions inside the window
    assert answer["positions"] == list(range(0, 2 * n, 2))
    sim = np.array(answer["similarity"])
    assert sim.shape == (n, n) and np.allclose(np.diag(sim), 1.0, atol=1e-4)


def test_bpe(client):
    answer = ok(client.post("/api/bpe", json={"text": " unbelievable"}), "bpe")
    assert answer["ids"] == TOK.encode(" unbelievable")
    merges = answer["pieces"][0]["merges"]
    assert merges[0]["parts"][0] == "Ġ" and merges[-1]["parts"] == ["Ġunbelievable"]
    refused(client.post("/api/bpe", json={"text": ""}), "empty")
    refused(client.post("/api/bpe", json={"text": "x" * 401}), "400")


def test_compare(client):
    answer = ok(client.post("/api/compare", json={"text": "Hello there"}), "compare")
    assert [e["name"] for e in answer["engines"]][0] == "pure" and answer["reference"] == "pure"
    assert answer["largest"]["relative"] < 1e-5
    assert all(d["same_best_token"] == 1.0 for d in answer["differences"])
    two = ok(client.post("/api/compare", json={"text": "Hello", "engines": ["numpy", "numpy", "pure"]}), "compare")
    assert [e["name"] for e in two["engines"]] == ["numpy", "pure"] and two["reference"] == "pure"


def test_source_is_served_only_for_the_named_functions(client):
    answer = ok(client.get("/api/source", params={"name": "gpt2.engines.pure.model.attention"}), "source")
    assert answer["source"].startswith("def attention(") and answer["file"] == "gpt2/engines/pure/model.py"
    info = client.get("/api/info").json()
    for name in info["sources"]:
        if ".torch." in name:
            continue  # importing torch here is slow; its names are checked in test_explore_trace
        ok(client.get("/api/source", params={"name": name}), "source")
    for name in ("os.system", "gpt2.explore.sources.source_of", "../../etc/passwd", ""):
        refused(client.get("/api/source", params={"name": name}), "no source", status=404)


# --- bad requests --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("/api/trace", {"text": ""}, ["empty"]),
        ("/api/trace", {}, ["text", "ids"]),
        ("/api/trace", {"text": "a", "ids": [1]}, ["exactly one"]),
        ("/api/trace", {"ids": []}, ["empty"]),
        ("/api/trace", {"ids": [50257]}, ["50257", "outside the vocabulary"]),
        ("/api/trace", {"ids": [-1]}, ["-1", "outside the vocabulary"]),
        ("/api/trace", {"ids": [1, 2.5]}, ["integers"]),
        ("/api/trace", {"ids": [1, True]}, ["integers"]),
        ("/api/trace", {"ids": [1] * 129}, ["129 tokens", "at most 128"]),
        ("/api/trace", {"ids": [1] * 65}, ["65 tokens", "at most 64"]),  # the model's window
        ("/api/trace", {"text": "word " * 70}, ["tokens", "at most 64"]),
        ("/api/trace", {"text": "x" * (MAX_TEXT_CHARS + 1)}, ["characters"]),
        ("/api/trace", {"text": "hi", "engine": "jax"}, ["unknown engine", "jax"]),
        ("/api/trace", {"text": "hi", "engine": 3}, ["engine"]),
        ("/api/trace", {"text": "hi", "temperature": -1}, ["temperature"]),
        ("/api/trace", {"text": "hi", "temperature": "hot"}, ["temperature"]),
        ("/api/trace", {"text": "hi", "top_p": 0}, ["top_p"]),
        ("/api/trace", {"text": "hi", "top_k": -3}, ["top_k"]),
        ("/api/trace", {"text": "hi", "top": 1000}, ["top"]),
        ("/api/trace", {"text": "hi", "attention": "png"}, ["attention"]),
        ("/api/trace", {"text": "hi", "colour": "red"}, ["unknown field", "colour"]),
        ("/api/trace", [1, 2], ["JSON object"]),
        ("/api/next", {"text": ""}, ["empty"]),
        ("/api/step", {"ids": [1] * 64}, ["full"]),
        ("/api/step", {"ids": [1], "token": 50257}, ["outside the vocabulary"]),
        ("/api/step", {"ids": [1], "seed": -5}, ["seed"]),
        ("/api/step", {"ids": [1], "draw": -1}, ["draw"]),
        ("/api/step", {"ids": [1], "trace": "yes"}, ["trace"]),
        ("/api/embeddings/neighbours", {"id": 50257}, ["outside the vocabulary"]),
        ("/api/embeddings/neighbours", {"id": 1, "text": "a"}, ["not both"]),
        ("/api/embeddings/positions", {"count": 0}, ["count"]),
        ("/api/compare", {"text": "hi", "engines": ["pure", "jax"]}, ["unknown engine"]),
        ("/api/compare", {"text": "hi", "engines": []}, ["engines"]),
    ],
)
def test_bad_requests_get_a_clear_400(client, path, body, words):
    refused(client.post(path, json=body), *words)


def test_a_body_that_is_not_json_gets_a_400(client):
    refused(client.post("/api/trace", content=b"{text: hello}"), "not valid JSON")
    refused(client.post("/api/trace", content=b""), "JSON object")
    refused(client.post("/api/trace", content=b"\xff\xfe"), "not UTF-8")


def test_special_tokens_in_text_are_their_ids(client):
    trace = ok(client.post("/api/trace", json={"text": "hi<|endoftext|>"}), "trace")
    assert [t["id"] for t in trace["tokens"]] == [5303, 50256]


# --- the page ------------------------------------------------------------------------------------


def test_the_page_and_its_files(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("main.js", "core.js", "explore.css"):
        assert client.get(f"/explore/static/{name}").status_code == 200
    assert client.get("/explore/static/nothing.js").status_code == 404
    assert client.get("/explore/static/..%2Fapi.py").status_code == 404


def test_the_page_names_no_other_server():
    from gpt2.explore.api import STATIC

    # The guide's chapters are served by the explorer itself (/guide/...): tests/test_guide.py
    # checks where the links lead.
    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8").replace("http://www.w3.org/2000/svg", "")  # a name, not a request
        for scheme in ("http://", "https://", "//fonts.", "@import"):
            assert scheme not in text, (path.name, scheme)


def test_the_router_mounts_into_another_app(explorer):
    app = FastAPI()

    @app.get("/v1/models")
    def models() -> dict:
        return {"data": []}

    app.include_router(explore_router(explorer))
    with TestClient(app) as c:
        assert c.get("/v1/models").json() == {"data": []}
        assert ok(c.post("/api/trace", json={"text": "Hi", "attention": "none"}), "trace")["attention"] is None
        assert c.get("/").status_code == 200


def test_the_json_is_compact_and_finite(client):
    response = client.post("/api/trace", json={"text": TEXT})
    assert b"NaN" not in response.content and b"Infinity" not in response.content
    compact = json.dumps(response.json(), ensure_ascii=False, separators=(",", ":")).encode()
    assert response.content == compact
    assert math.isfinite(response.json()["next_token"]["candidates"][0]["logit"])
