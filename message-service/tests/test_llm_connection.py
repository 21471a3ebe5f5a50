"""message-service's connection to llm-service, kept across replies (the real fleet)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from chat_common.testing.fleet import FleetUser
from tests.conftest import Fleet


async def test_replies_one_after_another_reuse_one_connection_to_llm_service(
    client: httpx.AsyncClient, app: FastAPI, fleet: Fleet, alice: FleetUser
) -> None:
    conversation = fleet.conversation(alice)
    pool = app.state.runtime.fleet.llm_stream._transport._pool
    idle = list(pool.connections)  # left by earlier tests' concurrent replies, until they expire
    kept = []

    for content in ("Hello, captain!", "And again."):
        response = await client.post(
            f"/api/v1/conversations/{conversation['id']}/messages",
            json={"content": content},
            headers=alice.headers,
        )
        assert response.status_code == 201, response.text
        kept.append(list(pool.connections))

    assert len(kept[0]) <= len(idle) + 1
    assert set(map(id, kept[1])) <= set(map(id, kept[0]))  # no new connection for the next reply
