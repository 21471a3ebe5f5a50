"""Found by an adversarial review: each test is one way a user could break the promise (a reply never
lost nor charged twice, a clear 4xx for bad input, never a 500)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from chat_common.testing.fleet import FleetUser
from lmstudio_client.testing import StandinProcess
from tests.conftest import DATABASE, Fleet
from tests.test_analytics import until


@pytest.fixture
async def messages(mongodb_url: str) -> AsyncIterator[AsyncCollection[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url)
    yield client[DATABASE]["messages"]
    await client.close()


async def test_a_plain_send_whose_conversation_is_purged_while_it_generates_is_404_not_500(
    client: httpx.AsyncClient,
    fleet: Fleet,
    alice: FleetUser,
    standin: StandinProcess,
    messages: AsyncCollection[dict[str, Any]],
) -> None:
    standin.configure(first_token_delay=3)
    conversation = fleet.conversation(alice)
    before = fleet.balance(alice)
    sending = asyncio.ensure_future(
        client.post(
            f"/api/v1/conversations/{conversation['id']}/messages",
            json={"content": "Tell me a long story", "max_tokens": 64},
            headers=alice.headers,
        )
    )

    async def generating() -> bool:
        found = await messages.find_one({"conversation_id": conversation["id"], "status": "generating"})
        return found is not None

    await until(generating)
    fleet.delete_conversation(alice, conversation["id"])
    response = await asyncio.wait_for(sending, 20)

    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "conversation_deleted"
    await until(lambda: _balance_is(fleet, alice, before))


async def _balance_is(fleet: Fleet, user: FleetUser, balance: int) -> bool:
    return fleet.balance(user) == balance
