"""Direct use is paid: a user's call reserves credits at the real user-service, then commits the real
cost or releases. Service tokens with `llm:generate` are served unmetered. Costs (conftest.COSTS):
2 credits a request + 1 a generated token; max_tokens 64 when absent, at most 200."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from app.main import create_app
from chat_common.embedded import free_port
from chat_common.testing import serve_app
from lmstudio_client.testing import StandinProcess
from tests.conftest import (
    EMBED,
    INITIAL_CREDITS,
    Account,
    chat_body,
    make_settings,
    service_token,
    sse_events,
)

STORY = "tell me a story"  # the stand-in answers "You said: tell me a story": 6 tokens
RESERVED = 2 + 64  # per request + the default max_tokens
STORY_COST = 2 + 6


def ledger_moves(account: Account) -> list[tuple[str, int]]:
    return [(row["kind"], row["amount"]) for row in account.ledger()]


async def until(condition: Callable[[], bool], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def reservation_calls(user_service_url: str) -> float:
    """How many reservation requests user-service has answered (its Prometheus counter)."""
    metrics = httpx.get(f"{user_service_url}/metrics", timeout=10).text
    pattern = re.compile(r'^http_requests_total\{[^}]*handler="/api/v1/credits/reservations"[^}]*\} (\S+)$')
    return sum(float(m.group(1)) for line in metrics.splitlines() if (m := pattern.match(line)))


@pytest.mark.parametrize("stream", [False, True])
async def test_a_users_call_costs_exactly_its_computed_cost(
    client: httpx.AsyncClient, account: Account, user_service_url: str, stream: bool
) -> None:
    before = reservation_calls(user_service_url)
    response = await client.post("/api/v1/chat/completions", json=chat_body(STORY, stream=stream))
    assert response.status_code == 200
    assert reservation_calls(user_service_url) == before + 1
    if stream:
        events = sse_events(response.text)
        assert events[-1] == "[DONE]" and events[-2]["usage"]["completion_tokens"] == 6
    else:
        assert response.json()["usage"]["completion_tokens"] == 6
    assert account.balance() == INITIAL_CREDITS - STORY_COST
    assert ledger_moves(account) == [
        ("signup_bonus", INITIAL_CREDITS),
        ("reservation", -RESERVED),
        ("refund", RESERVED - STORY_COST),
    ]


async def test_text_completion_is_paid_too(client: httpx.AsyncClient, account: Account) -> None:
    response = await client.post("/api/v1/completions", json={"prompt": "Once upon a time"})
    assert response.json()["usage"]["completion_tokens"] == 6  # "You said: Once upon a time"
    assert account.balance() == INITIAL_CREDITS - (2 + 6)


async def test_embeddings_cost_the_per_request_price(client: httpx.AsyncClient, account: Account) -> None:
    response = await client.post("/api/v1/embeddings", json={"model": EMBED, "input": ["a", "b"]})
    assert response.status_code == 200
    assert ledger_moves(account)[1:] == [("reservation", -2)] and account.balance() == INITIAL_CREDITS - 2


async def test_max_tokens_is_capped_and_the_reservation_follows_it(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await client.post("/api/v1/chat/completions", json=chat_body(STORY, max_tokens=100_000))
    assert response.status_code == 200
    assert ledger_moves(account)[1:] == [("reservation", -(2 + 200)), ("refund", 200 - 6)]


async def test_not_enough_credits_is_402_before_any_model_call(
    standin: StandinProcess, user_service_url: str, account: Account
) -> None:
    settings = make_settings(standin.url, user_service_url, direct_max_tokens=5000)
    with serve_app(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, headers=account.headers, timeout=30) as http:
            response = await http.post("/api/v1/chat/completions", json=chat_body(max_tokens=2000))
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "insufficient_credits" and error["request_id"]
    assert error["details"] == {"needed": 2002, "balance": INITIAL_CREDITS}
    assert standin.stats()["requests"] == 0
    assert account.balance() == INITIAL_CREDITS


@pytest.mark.parametrize(
    ("setup", "stream", "status"),
    [({"failure": "crash"}, False, 502), ({"first_token_delay": 3}, True, 504)],
)
async def test_an_upstream_failure_releases_the_reservation(
    client: httpx.AsyncClient,
    account: Account,
    standin: StandinProcess,
    setup: dict[str, Any],
    stream: bool,
    status: int,
) -> None:
    standin.configure(**setup)
    response = await client.post("/api/v1/chat/completions", json=chat_body(STORY, stream=stream))
    assert response.status_code == status
    assert account.balance() == INITIAL_CREDITS
    assert ledger_moves(account)[1:] == [("reservation", -RESERVED), ("released", RESERVED)]


async def test_a_failure_mid_stream_releases_the_reservation(
    client: httpx.AsyncClient, account: Account, standin: StandinProcess
) -> None:
    # paced, so the first chunks are read before the stand-in drops the connection
    standin.configure(failure="disconnect", disconnect_after=2, tokens_per_second=20)
    response = await client.post("/api/v1/chat/completions", json=chat_body("word " * 20, stream=True))
    events = sse_events(response.text)
    assert len(events) == 3 and events[-1]["error"]["code"] == "llm_error"
    await until(lambda: len(account.ledger()) == 3)
    assert account.balance() == INITIAL_CREDITS


async def test_leaving_mid_stream_pays_only_the_generated_part(
    llm_url: str, account: Account, standin: StandinProcess
) -> None:
    standin.configure(failure="stall", stall_after=3)  # 3 tokens, then nothing (the connection stays open)
    async with httpx.AsyncClient(base_url=llm_url, headers=account.headers, timeout=30) as http:
        body = chat_body("word " * 40, stream=True)
        async with http.stream("POST", "/api/v1/chat/completions", json=body) as response:
            data = [line async for line in _first_data_lines(response, 3)]
    assert len(data) == 3  # then the client hangs up
    await until(lambda: len(account.ledger()) == 3)
    assert ledger_moves(account)[1:] == [("reservation", -RESERVED), ("refund", RESERVED - (2 + 3))]
    assert account.balance() == INITIAL_CREDITS - (2 + 3)
    await until(lambda: standin.stats()["cancelled"] == 1)


async def _first_data_lines(response: httpx.Response, count: int) -> Any:
    seen = 0
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            yield line
            seen += 1
            if seen == count:
                return


async def test_a_service_token_with_llm_generate_is_served_unmetered(
    llm_url: str, user_service_url: str
) -> None:
    token = service_token(user_service_url, "message-service", "dev-message-service-secret", "llm:generate")
    before = reservation_calls(user_service_url)
    async with httpx.AsyncClient(base_url=llm_url, headers={"Authorization": f"Bearer {token}"}) as http:
        plain = await http.post("/api/v1/chat/completions", json=chat_body(STORY, max_tokens=100_000))
        streamed = await http.post("/api/v1/chat/completions", json=chat_body(STORY, stream=True))
    assert plain.status_code == streamed.status_code == 200
    assert plain.json()["choices"][0]["message"]["content"] == "You said: tell me a story"
    assert reservation_calls(user_service_url) == before


async def test_a_service_token_without_llm_generate_is_403_before_any_model_call(
    llm_url: str, user_service_url: str, standin: StandinProcess
) -> None:
    token = service_token(user_service_url, "message-service", "dev-message-service-secret", "credits:write")
    async with httpx.AsyncClient(base_url=llm_url, headers={"Authorization": f"Bearer {token}"}) as http:
        responses = [
            await http.post("/api/v1/chat/completions", json=chat_body()),
            await http.post("/api/v1/completions", json={"prompt": "x"}),
            await http.post("/api/v1/embeddings", json={"model": EMBED, "input": "x"}),
        ]
    assert [r.status_code for r in responses] == [403, 403, 403]
    assert all("llm:generate" in r.json()["error"]["message"] for r in responses)
    assert standin.stats()["requests"] == 0


async def test_model_listing_is_free(
    client: httpx.AsyncClient, account: Account, user_service_url: str
) -> None:
    before = reservation_calls(user_service_url)
    assert (await client.get("/api/v1/models")).status_code == 200
    assert (await client.get(f"/api/v1/models/{EMBED}")).status_code == 200
    assert (await client.get("/api/v1/status")).status_code == 200
    assert account.balance() == INITIAL_CREDITS and reservation_calls(user_service_url) == before


@pytest.mark.parametrize("stream", [False, True])
async def test_user_service_down_is_503_naming_it_and_no_model_call(
    standin: StandinProcess, user_service_url: str, account: Account, stream: bool
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    settings = make_settings(standin.url, nowhere, jwks_url=f"{user_service_url}/.well-known/jwks.json")
    with serve_app(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, headers=account.headers, timeout=30) as http:
            response = await http.post("/api/v1/chat/completions", json=chat_body(stream=stream))
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "dependency_unavailable" and error["details"]["service"] == "user-service"
    assert "user-service" in error["message"]
    assert standin.stats()["requests"] == 0
