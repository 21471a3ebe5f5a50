"""A client that leaves while its request waits for a slot, or for the first streamed chunk, frees the
slot at once (it is not held until the first-token timeout)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from app.main import create_app
from chat_common.testing import serve_app
from lmstudio_client.testing import StandinProcess
from tests.conftest import Account, chat_body, make_settings

SLOW = 60.0  # the stand-in's first-token delay: far longer than any wait below


async def until(condition: Callable[[], Any], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.fixture
async def one_slot(
    standin: StandinProcess, user_service_url: str, account: Account
) -> AsyncIterator[httpx.AsyncClient]:
    """llm-service with one slot toward a stand-in that is slow to give its first token."""
    standin.configure(first_token_delay=SLOW)
    settings = make_settings(
        standin.url, user_service_url, max_concurrency=1, first_token_timeout_seconds=SLOW * 2
    )
    with serve_app(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, headers=account.headers, timeout=30) as http:
            yield http


async def queue(http: httpx.AsyncClient) -> dict[str, int]:
    return dict((await http.get("/api/v1/status")).json()["queue"])


async def leave_after(http: httpx.AsyncClient, body: dict[str, Any], seconds: float) -> None:
    """Send, then hang up after `seconds` without having read an answer."""
    with pytest.raises(httpx.ReadTimeout):
        await http.post("/api/v1/chat/completions", json=body, timeout=httpx.Timeout(30, read=seconds))


@pytest.mark.parametrize("stream", [True, False])
async def test_leaving_before_the_first_chunk_frees_the_slot(
    one_slot: httpx.AsyncClient, standin: StandinProcess, account: Account, stream: bool
) -> None:
    waiting = asyncio.ensure_future(leave_after(one_slot, chat_body("slow", stream=stream), 1.0))
    await until(lambda: _active(one_slot, 1))
    await waiting  # the client has gone, still before LM Studio's first token
    await until(lambda: _active(one_slot, 0))
    await until(lambda: _ledger_length(account, 3))  # its bill is settled
    standin.configure(first_token_delay=0)
    served = await one_slot.post("/api/v1/chat/completions", json=chat_body("next", stream=stream))
    assert served.status_code == 200
    assert standin.stats()["cancelled"] == 1
    # it reached the model and generated nothing: the per-request cost (2) of the 66 reserved
    assert moves(account)[1:3] == [("reservation", -66), ("refund", 64)]


@pytest.mark.parametrize("stream", [True, False])
async def test_leaving_the_queue_frees_the_place_at_once(
    one_slot: httpx.AsyncClient, standin: StandinProcess, account: Account, stream: bool
) -> None:
    holder = asyncio.ensure_future(one_slot.post("/api/v1/chat/completions", json=chat_body("first")))
    try:
        await until(lambda: _active(one_slot, 1))
        queued = asyncio.ensure_future(leave_after(one_slot, chat_body("second", stream=stream), 1.0))
        await until(lambda: _waiting(one_slot, 1))
        await queued
        await until(lambda: _waiting(one_slot, 0))
        assert await queue(one_slot) == {"active": 1, "waiting": 0, "limit": 1, "max_queue": 16}
        assert standin.stats()["requests"] == 1  # the one that left never reached LM Studio
        # both reserved; the one that left the queue got everything back
        await until(lambda: _ledger_length(account, 4))
        assert moves(account)[1:] == [("reservation", -66), ("reservation", -66), ("released", 66)]
    finally:
        holder.cancel()


async def _active(http: httpx.AsyncClient, count: int) -> bool:
    return (await queue(http))["active"] == count


async def _waiting(http: httpx.AsyncClient, count: int) -> bool:
    return (await queue(http))["waiting"] == count


def moves(account: Account) -> list[tuple[str, int]]:
    return [(row["kind"], row["amount"]) for row in account.ledger()]


async def _ledger_length(account: Account, count: int) -> bool:
    return len(account.ledger()) == count
