"""What a client meets over HTTP: Location of created characters, the methods of a path, trailing
slashes, and an OpenAPI document whose Authorize button reaches user-service."""

from __future__ import annotations

import json

from fastapi import FastAPI
from httpx import AsyncClient

from app.characters.tests.cardkit import import_card
from app.characters.tests.conftest import Caller, CharacterFactory
from chat_common.openapi import convention_problems


async def test_create_locates_the_new_character(client: AsyncClient, alice: Caller) -> None:
    created = await client.post("/api/v1/characters", json={"name": "Lumen"}, headers=alice.headers)
    assert created.status_code == 201
    assert created.headers["Location"] == f"/api/v1/characters/{created.json()['id']}"
    read = await client.get(created.headers["Location"], headers=alice.headers)
    assert read.json()["name"] == "Lumen"


async def test_import_locates_the_imported_character(client: AsyncClient, alice: Caller) -> None:
    card = {"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "Imported", "description": "d"}}
    created = await import_card(client, alice, json.dumps(card).encode(), "card.json")
    assert created.status_code == 201, created.text
    read = await client.get(created.headers["Location"], headers=alice.headers)
    assert read.json()["id"] == created.json()["id"] and read.json()["name"] == "Imported"


async def test_405_names_every_method_of_a_character(
    client: AsyncClient, alice: Caller, make_character: CharacterFactory
) -> None:
    character = await make_character(alice)
    response = await client.post(f"/api/v1/characters/{character['id']}", headers=alice.headers)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, PUT, PATCH, DELETE"


async def test_a_trailing_slash_reads_the_same_as_without(
    client: AsyncClient, alice: Caller, make_character: CharacterFactory
) -> None:
    character = await make_character(alice)
    response = await client.get(f"/api/v1/characters/{character['id']}/", headers=alice.headers)
    assert response.status_code == 200 and response.json()["id"] == character["id"]


def test_authorize_reaches_user_service_and_every_operation_documents_the_error_envelope(
    app: FastAPI,
) -> None:
    document = app.openapi()
    assert convention_problems(document, "http://localhost:8024/api/v1/auth/token") == []
