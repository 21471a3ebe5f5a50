"""What a client meets over HTTP: Location of created conversations and sessions, and an OpenAPI
document whose Authorize button reaches user-service and whose errors are the shared envelope."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from chat_common.openapi import convention_problems
from chat_common.testing.fleet import FleetUser


async def test_a_new_conversation_is_located_where_it_reads_back(
    client: httpx.AsyncClient,
    make_character,
    alice: FleetUser,  # type: ignore[no-untyped-def]
) -> None:
    character = await make_character(alice)
    created = await client.post(
        "/api/v1/conversations", json={"character_id": character["id"]}, headers=alice.headers
    )
    assert created.status_code == 201
    assert created.headers["Location"] == f"/api/v1/conversations/{created.json()['id']}"
    read = await client.get(created.headers["Location"], headers=alice.headers)
    assert read.json()["character_id"] == character["id"]


async def test_a_started_session_is_located_and_the_already_active_one_is_not(
    client: httpx.AsyncClient,
    start_conversation,
    alice: FleetUser,
    bob: FleetUser,  # type: ignore[no-untyped-def]
) -> None:
    conversation = await start_conversation(alice)
    path = f"/api/v1/conversations/{conversation['id']}/sessions"
    started = await client.post(path, headers=alice.headers)
    assert started.status_code == 201
    assert started.headers["Location"] == f"/api/v1/sessions/{started.json()['id']}"
    read = await client.get(started.headers["Location"], headers=alice.headers)
    assert read.status_code == 200 and read.json()["status"] == "active"
    assert read.json()["id"] == started.json()["id"]
    again = await client.post(path, headers=alice.headers)
    assert again.status_code == 200 and "Location" not in again.headers
    assert (await client.get(started.headers["Location"], headers=bob.headers)).status_code == 404


async def test_a_trailing_slash_lists_the_same_conversations(
    client: httpx.AsyncClient,
    start_conversation,
    alice: FleetUser,  # type: ignore[no-untyped-def]
) -> None:
    await start_conversation(alice)
    plain = await client.get("/api/v1/conversations", headers=alice.headers)
    slashed = await client.get("/api/v1/conversations/", headers=alice.headers)
    assert slashed.status_code == 200 and slashed.json() == plain.json()


def test_authorize_reaches_user_service_and_every_operation_documents_the_error_envelope(
    app: FastAPI,
) -> None:
    document = app.openapi()
    assert convention_problems(document, "http://localhost:8024/api/v1/auth/token") == []
