"""What a client meets over HTTP: Location of the messages a send, a regenerate and an edit create
(each readable at GET /messages/{id}), and an OpenAPI document whose Authorize button reaches
user-service and whose errors are the shared envelope."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from chat_common.openapi import convention_problems
from chat_common.testing.fleet import FleetUser
from tests.conftest import Fleet
from tests.test_chat import sse_events


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


async def test_every_streamed_answer_is_documented_as_the_events_it_sends(
    client: httpx.AsyncClient, app: FastAPI, fleet: Fleet, alice: FleetUser
) -> None:
    """A regenerate, continue or edit asked to stream answers 200 with SSE, not its JSON status: each
    operation that can stream documents that 200 as `text/event-stream`, one event a schema naming
    the events it sends (the schema fuzzer found the 200 of a streamed continue undocumented)."""
    responses = {
        (method, path): operation["responses"]
        for path, item in app.openapi()["paths"].items()
        for method, operation in item.items()
    }
    streaming = [
        ("post", "/api/v1/conversations/{conversation_id}/messages"),
        ("post", "/api/v1/messages/{message_id}/regenerate"),
        ("post", "/api/v1/messages/{message_id}/continue"),
        ("patch", "/api/v1/messages/{message_id}"),
        ("get", "/api/v1/messages/{message_id}/stream"),
    ]
    documented = {key: responses[key]["200"]["content"]["text/event-stream"]["schema"] for key in streaming}
    assert "application/json" not in responses[streaming[-1]]["200"]["content"]  # a stream only

    conversation = fleet.conversation(alice)
    sent = await client.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"content": "Hello, captain!", "max_tokens": 8},
        headers=alice.headers,
    )
    assert sent.status_code == 201, sent.text
    continued = await client.post(
        f"/api/v1/messages/{sent.json()['reply']['id']}/continue",
        json={"stream": True, "max_tokens": 8},
        headers=alice.headers,
    )
    assert continued.status_code == 200, continued.text
    assert continued.headers["content-type"].startswith("text/event-stream")
    names = [name for _, name, _ in sse_events(continued.text)]
    assert names[0] == "message.created" and names[-1] == "message.completed"
    for event in documented.values():
        assert event["required"] == ["data"]
        assert set(names) <= set(event["properties"]["event"]["enum"])
