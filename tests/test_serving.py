"""`s2gr serve`: the HTTP API run as a real server process on a free port, queried like a client would."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from tiny_runs import child_env

from s2gr import S2GRRecommender
from s2gr.serving import RequestBatcher, _Pending
from s2gr.titles import load_titles

NUM_BEAMS = 5
MAX_TOP_K = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_s2gr) -> Iterator[str]:
    """`s2gr serve` on the tiny model in its own process; its base URL. Stopped (and checked) at the end."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "s2gr.cli",
        "serve",
        "--model",
        str(tiny_s2gr.folder),
        "--port",
        str(port),
    ]
    command += [
        "--num-beams",
        str(NUM_BEAMS),
        "--max-wait-ms",
        "50",
        "--max-top-k",
        str(MAX_TOP_K),
        "--device",
        "cpu",
    ]
    process = subprocess.Popen(
        command, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "/health", timeout=2, trust_env=False).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the server did not start:\n{process.stdout.read()[-4000:]}")
        time.sleep(0.3)
    yield url
    process.terminate()
    output, _ = process.communicate(timeout=30)
    # A clean shutdown on SIGTERM (uvicorn re-raises the signal once the app has stopped).
    assert process.returncode in (0, -signal.SIGTERM) and "Application shutdown complete" in output, output[
        -4000:
    ]
    assert "Traceback" not in output and " 500 " not in output


def post(url: str, body) -> httpx.Response:
    if isinstance(body, str):
        return httpx.post(
            url + "/recommend", content=body, headers={"content-type": "application/json"}, trust_env=False
        )
    return httpx.post(url + "/recommend", json=body, timeout=60, trust_env=False)


def api(loaded, histories, top_k=10, exclude=True):
    model, tokenizer = loaded
    return S2GRRecommender(model, tokenizer).recommend(
        histories,
        top_k=top_k,
        num_beams=NUM_BEAMS,
        exclude=histories if exclude else None,
        return_scores=True,
    )


def as_pairs(ranking: list[dict]) -> list[tuple[str, float]]:
    return [(row["item_id"], row["score"]) for row in ranking]


def assert_same(served: list[dict], expected: list[tuple[str, float]]) -> None:
    assert [item for item, _ in as_pairs(served)] == [item for item, _ in expected]
    assert [score for _, score in as_pairs(served)] == pytest.approx(
        [score for _, score in expected], abs=1e-4
    )


def test_recommend_returns_the_apis_ranking_with_titles(server, tiny_s2gr, loaded) -> None:
    histories = [tiny_s2gr.data.splits["test"][row]["history"] for row in range(3)]
    response = post(server, {"histories": histories, "top_k": 4})
    assert response.status_code == 200
    body = response.json()
    assert body["skipped_unknown"] == [0, 0, 0]
    for served, expected, history in zip(
        body["recommendations"], api(loaded, histories, 4), histories, strict=True
    ):
        assert_same(served, expected)
        assert not {row["item_id"] for row in served} & set(history)
    titles = load_titles(tiny_s2gr.folder)
    assert all(row["title"] == titles[row["item_id"]] for row in body["recommendations"][0])
    one = post(server, {"history": histories[0], "top_k": 4, "exclude_seen": False}).json()
    assert_same(one["recommendations"][0], api(loaded, histories[:1], 4, exclude=False)[0])


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(server, tiny_s2gr, loaded) -> None:
    histories = [tiny_s2gr.data.splits["validation"][row]["history"] for row in range(12)]
    before = httpx.get(server + "/health", trust_env=False).json()["beam_searches"]
    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda h: post(server, {"history": h, "top_k": 3}), histories))
    assert [r.status_code for r in responses] == [200] * 12
    for response, expected in zip(responses, api(loaded, histories, 3), strict=True):
        assert_same(response.json()["recommendations"][0], expected)
    searches = httpx.get(server + "/health", trust_env=False).json()["beam_searches"] - before
    assert 1 <= searches < 12  # requests that arrived together shared a beam search


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        ({"history": ["no-such-item"]}, "not in the model's catalog"),
        ({"history": []}, "at least 1 item"),
        ({"histories": [["1"], []]}, "at least one item id"),
        ({"history": ["1"], "histories": [["1"]]}, "not both"),
        ({}, "either 'histories'"),
        ({"history": ["1"], "top_k": 0}, "greater than or equal to 1"),
        ({"history": ["1"], "top_k": MAX_TOP_K + 1}, f"less than or equal to {MAX_TOP_K}"),
        ({"history": "1"}, "valid list"),
        ('{"history": ["1"', "JSON decode error"),
        ("[1, 2]", "valid dictionary"),
    ],
)
def test_bad_requests_get_a_4xx_that_says_why(server, body, phrase: str) -> None:
    response = post(server, body)
    assert response.status_code == 422
    assert phrase in response.text


def test_unknown_items_can_be_skipped_and_are_counted(server, tiny_s2gr, loaded) -> None:
    history = tiny_s2gr.data.splits["test"][5]["history"]
    body = post(server, {"history": ["nope", *history, "nada"], "top_k": 4, "skip_unknown": True}).json()
    assert body["skipped_unknown"] == [2]
    assert_same(body["recommendations"][0], api(loaded, [history], 4)[0])
    response = post(server, {"history": ["nope"], "skip_unknown": True})
    assert response.status_code == 422 and "no item of the model's catalog" in response.text


def test_items_health_and_openapi(server, tiny_s2gr, loaded) -> None:
    _, tokenizer = loaded
    item = tokenizer.item_ids[7]
    body = httpx.get(f"{server}/items/{item}", trust_env=False).json()
    assert body == {
        "item_id": item,
        "title": load_titles(tiny_s2gr.folder)[item],
        "semantic_id": list(map(int, tokenizer.item_to_sid(item))),
    }
    missing = httpx.get(f"{server}/items/no-such-item", trust_env=False)
    assert missing.status_code == 404 and "not in the model's catalog" in missing.text
    health = httpx.get(server + "/health", trust_env=False).json()
    assert (
        health["status"] == "ok"
        and health["items"] == tokenizer.num_items
        and health["num_beams"] == NUM_BEAMS
    )
    schema = httpx.get(server + "/openapi.json", trust_env=False).json()
    assert {"/recommend", "/items/{item_id}", "/health"} <= set(schema["paths"])
    assert httpx.get(server + "/docs", trust_env=False).status_code == 200


def test_batcher_groups_by_beam_width_so_a_large_top_k_changes_no_other_answer(tiny_s2gr, loaded) -> None:
    model, tokenizer = loaded
    histories = [tiny_s2gr.data.splits["test"][row]["history"] for row in range(4)]
    batcher = RequestBatcher(S2GRRecommender(model, tokenizer), num_beams=NUM_BEAMS, max_batch=8)
    loop = asyncio.new_event_loop()
    try:
        future = loop.create_future
        batch = [
            _Pending(histories[:2], 3, True, future()),
            _Pending(histories[2:3], NUM_BEAMS + 4, True, future()),  # a wider beam: its own search
            _Pending(histories[3:], 2, False, future()),
        ]
        results = batcher._rank(batch)
    finally:
        loop.close()
    assert batcher.batches == 2
    expected = [api(loaded, histories[:2], 3), api(loaded, histories[2:3], NUM_BEAMS + 4)]
    expected.append(api(loaded, histories[3:], 2, exclude=False))
    for result, answer in zip(results, expected, strict=True):  # scores: equal up to batch-size rounding
        for ranking, expected_ranking in zip(result, answer, strict=True):
            assert_same([{"item_id": item, "score": score} for item, score in ranking], expected_ranking)
    assert len(results[1][0]) == NUM_BEAMS + 4


def test_cold_item_shares_keep_requests_of_other_top_k_apart(tiny_s2gr, loaded) -> None:
    model, tokenizer = loaded
    histories = [tiny_s2gr.data.splits["test"][row]["history"] for row in range(2)]
    for epsilon, searches in ((0.0, 1), (0.5, 2)):  # floor(ε · top_k) differs between top_k 3 and 4
        batcher = RequestBatcher(S2GRRecommender(model, tokenizer), num_beams=NUM_BEAMS)
        loop = asyncio.new_event_loop()
        try:
            batch = [_Pending(histories[:1], 3, True, loop.create_future(), epsilon)]
            batch.append(_Pending(histories[1:], 4, True, loop.create_future(), epsilon))
            results = batcher._rank(batch)
        finally:
            loop.close()
        assert batcher.batches == searches and [len(r[0]) for r in results] == [3, 4]
