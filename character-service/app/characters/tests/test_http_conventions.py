"""What a client meets over HTTP: Location of created characters, the methods of a path, trailing
slashes, and an OpenAPI document whose Authorize button reaches user-service."""

from __future__ import annotations

import json

from fastapi import FastAPI
from httpx import AsyncClient

from app.characters.tests.cardkit import b64, export_card, import_card, make_png
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


async def test_an_avatar_and_an_exported_card_are_documented_as_what_they_are(
    client: AsyncClient, app: FastAPI, alice: Caller
) -> None:
    """The avatar is a PNG and an export JSON or a PNG, each documented with its media type and a
    schema saying so (not an empty JSON schema beside them); the schema fuzzer reads these."""
    card = {"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "Pictured", "description": "d"}}
    png = make_png(("chara", b64(card)))
    imported = await import_card(client, alice, png, "pictured.png")
    assert imported.status_code == 201, imported.text
    character_id = imported.json()["id"]
    paths = app.openapi()["paths"]

    avatar = await client.get(f"/api/v1/characters/{character_id}/avatar", headers=alice.headers)
    assert avatar.status_code == 200 and avatar.headers["content-type"] == "image/png"
    documented = paths["/api/v1/characters/{character_id}/avatar"]["get"]["responses"]["200"]["content"]
    assert documented == {
        "image/png": {"schema": {"type": "string", "format": "binary", "contentMediaType": "image/png"}}
    }

    exported = paths["/api/v1/characters/{character_id}/export"]["get"]["responses"]["200"]["content"]
    assert exported["image/png"] == documented["image/png"]
    for fmt, media_type in (("json", "application/json"), ("png", "image/png")):
        response = await export_card(client, alice, character_id, fmt)
        assert response.status_code == 200 and response.headers["content-type"].startswith(media_type)
        assert exported[media_type]["schema"]["type"] == ("object" if fmt == "json" else "string")
