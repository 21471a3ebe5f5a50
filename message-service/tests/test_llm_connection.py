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
    kept = []

    for content in ("Hello, captain!", "And again."):
        response = await client.post(
            f"/api/v1/conversations/{conversation['id']}/messages",
            json={"content": content},
            headers=alice.headers,
        )
        assert response.status_code == 201, response.text
        kept.append(list(pool.connections))

    assert kept[0]
    # no new connection for the second reply (idle ones of earlier tests' concurrent replies may be kept)
    assert {id(c) for c in kept[1]} <= {id(c) for c in kept[0]}
