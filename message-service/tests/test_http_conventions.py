"""What a client meets over HTTP: Location of the messages a send, a regenerate and an edit create
(each readable at GET /messages/{id}), and an OpenAPI document whose Authorize button reaches
user-service and whose errors are the shared envelope."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from chat_common.openapi import convention_problems
from chat_common.testing.fleet import FleetUser
from tests.conftest import Fleet


async def test_send_regenerate_and_edit_locate_the_message_they_created(
    client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser, bob: FleetUser
) -> None:
    conversation = fleet.conversation(alice)
    sent = await client.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"content": "Hello, captain!", "max_tokens": 16},
        headers=alice.headers,
    )
    assert sent.status_code == 201, sent.text
    user_message, reply = sent.json()["user_message"], sent.json()["reply"]
    assert sent.headers["Location"] == f"/api/v1/messages/{user_message['id']}"
    read = await client.get(sent.headers["Location"], headers=alice.headers)
    assert read.status_code == 200 and read.json() == user_message
    assert (await client.get(sent.headers["Location"], headers=bob.headers)).status_code == 404

    regenerated = await client.post(
        f"/api/v1/messages/{reply['id']}/regenerate", json={"max_tokens": 16}, headers=alice.headers
    )
    assert regenerated.status_code == 201, regenerated.text
    new_reply = (await client.get(regenerated.headers["Location"], headers=alice.headers)).json()
    assert new_reply["id"] == regenerated.json()["reply"]["id"] != reply["id"]
    assert (new_reply["sibling_index"], new_reply["sibling_count"]) == (1, 2)

    edited = await client.patch(
        f"/api/v1/messages/{user_message['id']}", json={"content": "Hello again!"}, headers=alice.headers
    )
    assert edited.status_code == 201, edited.text
    branch = (await client.get(edited.headers["Location"], headers=alice.headers)).json()
    assert branch["content"] == "Hello again!" and branch["id"] == edited.json()["user_message"]["id"]


def test_authorize_reaches_user_service_and_every_operation_documents_the_error_envelope(
    app: FastAPI,
) -> None:
    document = app.openapi()
    assert convention_problems(document, "http://localhost:8024/api/v1/auth/token") == []
