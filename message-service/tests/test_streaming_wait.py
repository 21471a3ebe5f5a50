"""A streamed reply whose model is slow to start: the SSE stream waits for it (the real fleet)."""

from __future__ import annotations

import httpx

from chat_common.testing.fleet import FleetUser
from lmstudio_client.testing import StandinProcess
from tests.conftest import Fleet
from tests.test_chat import sse_events


async def test_a_streamed_reply_arrives_when_the_first_token_takes_longer_than_redis_socket_timeout(
    client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser, standin: StandinProcess
) -> None:
    standin.configure(first_token_delay=6.0)  # message-service's Redis client times out reads at 5 s
    conversation = fleet.conversation(alice)

    response = await client.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"content": "Take your time", "stream": True},
        headers=alice.headers,
    )

    assert response.status_code == 200, response.text
    names = [name for _, name, _ in sse_events(response.text)]
    assert names[0] == "message.created" and names[-1] == "message.completed"
