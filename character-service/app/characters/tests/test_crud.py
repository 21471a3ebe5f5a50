"""CRUD, visibility and ownership rules."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import update

from app.characters.tests.conftest import Caller, CharacterFactory, error_code
from app.models import Character
from chat_common.testing import TokenMint


async def test_create_returns_every_field_owned_by_the_caller(client: AsyncClient, alice: Caller) -> None:
    body = {
        "name": "Captain Mira",
        "description": "A starship captain",
        "personality": "bold",
        "scenario": "On the bridge",
        "greeting": "Welcome aboard!",
        "alternate_greetings": ["Ahoy!"],
        "example_dialogues": "<START>\n{{user}}: Hi\n{{char}}: Hello",
        "system_prompt": "Stay in character",
        "post_history_instructions": "Be brief",
        "creator_notes": "for humans",
        "tags": ["sci-fi", "captain"],
        "creator": "alice",
        "character_version": "1.0",
        "visibility": "public",
        "metadata": {"mood": "calm"},
        "extensions": {"depth_prompt": {"depth": 4}},
        "character_book": {"entries": []},
    }
    response = await client.post("/api/v1/characters", json=body, headers=alice.headers)
    assert response.status_code == 201
    created = response.json()
    assert {k: created[k] for k in body} == body
    assert created["owner_id"] == alice.id and created["version"] == 1
    assert created["conversation_count"] == created["message_count"] == 0


async def test_other_user_gets_404_for_private_character(
    client: AsyncClient, alice: Caller, bob: Caller, make_character: CharacterFactory
) -> None:
    secret = await make_character(alice, visibility="private")
    assert (await client.get(f"/api/v1/characters/{secret['id']}", headers=alice.headers)).status_code == 200
    response = await client.get(f"/api/v1/characters/{secret['id']}", headers=bob.headers)
    assert response.status_code == 404 and error_code(response) == "not_found"
    for method in ("PATCH", "PUT", "DELETE"):
        attempt = await client.request(
            method, f"/api/v1/characters/{secret['id']}", json={"name": "x"}, headers=bob.headers
        )
        assert attempt.status_code == 404, method


async def test_unlisted_is_readable_by_id_but_not_listed(
    client: AsyncClient, alice: Caller, bob: Caller, make_character: CharacterFactory
) -> None:
    hidden = await make_character(alice, visibility="unlisted", name="Unlisted Zyx")
    assert (await client.get(f"/api/v1/characters/{hidden['id']}", headers=bob.headers)).status_code == 200
    listed = (await client.get("/api/v1/characters", params={"q": "Zyx"}, headers=bob.headers)).json()
    assert hidden["id"] not in [c["id"] for c in listed["items"]]


async def test_only_owner_changes_a_public_character(
    client: AsyncClient, alice: Caller, bob: Caller, make_character: CharacterFactory
) -> None:
    shared = await make_character(alice, visibility="public")
    patch = await client.patch(
        f"/api/v1/characters/{shared['id']}", json={"name": "Mine now"}, headers=bob.headers
    )
    assert patch.status_code == 403 and error_code(patch) == "forbidden"
    delete = await client.delete(f"/api/v1/characters/{shared['id']}", headers=bob.headers)
    assert delete.status_code == 403


async def test_admin_overrides_ownership(
    client: AsyncClient, alice: Caller, admin: Caller, make_character: CharacterFactory
) -> None:
    secret = await make_character(alice, visibility="private")
    assert (await client.get(f"/api/v1/characters/{secret['id']}", headers=admin.headers)).status_code == 200
    edited = await client.patch(
        f"/api/v1/characters/{secret['id']}", json={"tags": ["moderated"]}, headers=admin.headers
    )
    assert edited.status_code == 200 and edited.json()["tags"] == ["moderated"]
    assert edited.json()["owner_id"] == alice.id
    assert (
        await client.delete(f"/api/v1/characters/{secret['id']}", headers=admin.headers)
    ).status_code == 204


async def test_patch_changes_only_given_fields_and_bumps_version(
    client: AsyncClient, alice: Caller, make_character: CharacterFactory
) -> None:
    original = await make_character(alice, personality="shy", scenario="a library")
    response = await client.patch(
        f"/api/v1/characters/{original['id']}", json={"personality": "bold"}, headers=alice.headers
    )
    updated = response.json()
    assert updated["personality"] == "bold" and updated["scenario"] == "a library"
    assert updated["version"] == 2


async def test_put_replaces_every_field(
    client: AsyncClient, alice: Caller, make_character: CharacterFactory
) -> None:
    original = await make_character(alice, personality="shy", tags=["a"])
    response = await client.put(
        f"/api/v1/characters/{original['id']}", json={"name": "Fresh"}, headers=alice.headers
    )
    replaced = response.json()
    assert replaced["name"] == "Fresh" and replaced["personality"] == "" and replaced["tags"] == []
    assert replaced["version"] == 2


async def test_delete_is_soft_and_hides_everywhere(
    client: AsyncClient, alice: Caller, make_character: CharacterFactory
) -> None:
    gone = await make_character(alice, visibility="public", name="Vanishing Qwv")
    assert (await client.delete(f"/api/v1/characters/{gone['id']}", headers=alice.headers)).status_code == 204
    assert (await client.get(f"/api/v1/characters/{gone['id']}", headers=alice.headers)).status_code == 404
    mine = (await client.get("/api/v1/characters/mine", headers=alice.headers)).json()
    assert gone["id"] not in [c["id"] for c in mine["items"]]
    found = (await client.get("/api/v1/characters", params={"q": "Qwv"}, headers=alice.headers)).json()
    assert found["total"] == 0


async def test_mine_lists_every_visibility(
    client: AsyncClient, make_character: CharacterFactory, token_mint: object
) -> None:
    owner = Caller(token_mint)  # type: ignore[arg-type]
    for visibility in ("private", "unlisted", "public"):
        await make_character(owner, visibility=visibility)
    mine = (await client.get("/api/v1/characters/mine", headers=owner.headers)).json()
    assert mine["total"] == 3 and {c["visibility"] for c in mine["items"]} == {
        "private",
        "unlisted",
        "public",
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_service_reads_private_characters_only_with_the_read_private_scope(
    client: AsyncClient, alice: Caller, token_mint: TokenMint, make_character: CharacterFactory
) -> None:
    secret = await make_character(alice, visibility="private")
    public = await make_character(alice, visibility="public")
    unscoped = bearer(token_mint.service("conversation-service", ["characters:counters"]))
    reader = bearer(token_mint.service("message-service", ["characters:read_private"]))
    for path in ("", "/metadata", "/export"):
        refused = await client.get(f"/api/v1/characters/{secret['id']}{path}", headers=unscoped)
        assert refused.status_code == 403 and error_code(refused) == "forbidden", path
        assert refused.json()["error"]["message"] == "Missing scope(s): characters:read_private"
        allowed = await client.get(f"/api/v1/characters/{secret['id']}{path}", headers=reader)
        assert allowed.status_code == 200, path
    read = await client.get(f"/api/v1/characters/{secret['id']}", headers=reader)
    assert read.json()["id"] == secret["id"] and read.json()["visibility"] == "private"
    assert (await client.get(f"/api/v1/characters/{public['id']}", headers=unscoped)).status_code == 200
    create = await client.post("/api/v1/characters", json={"name": "x"}, headers=reader)
    assert create.status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "x", "visibility": "secret"},
        {"name": "x", "unknown_field": 1},
        {"name": "x", "tags": ["t"] * 51},
        {"name": "x", "tags": [""]},
        {"name": "x", "avatar_url": "javascript:alert(1)"},
        {"name": "x", "metadata": [1, 2]},
        {"name": 7},
    ],
)
async def test_bad_bodies_are_422(client: AsyncClient, alice: Caller, body: dict[str, object]) -> None:
    response = await client.post("/api/v1/characters", json=body, headers=alice.headers)
    assert response.status_code == 422 and error_code(response) == "validation_error"


async def test_requests_need_a_token(client: AsyncClient) -> None:
    assert (await client.get("/api/v1/characters")).status_code == 401
    assert (await client.post("/api/v1/characters", json={"name": "x"})).status_code == 401


async def test_unknown_and_malformed_ids(client: AsyncClient, alice: Caller) -> None:
    missing = await client.get(
        "/api/v1/characters/00000000-0000-0000-0000-000000000000", headers=alice.headers
    )
    assert missing.status_code == 404
    assert (await client.get("/api/v1/characters/not-an-id", headers=alice.headers)).status_code == 422


async def test_nul_characters_are_422_never_500(
    client: AsyncClient, alice: Caller, make_character: CharacterFactory
) -> None:
    created = await client.post("/api/v1/characters", json={"name": "a\u0000b"}, headers=alice.headers)
    assert created.status_code == 422 and "NUL" in created.json()["error"]["message"]
    character = await make_character(alice)
    for method in ("PUT", "PATCH"):
        metadata = await client.request(
            method,
            f"/api/v1/characters/{character['id']}/metadata",
            json={"k": "\u0000"},
            headers=alice.headers,
        )
        assert metadata.status_code == 422, method
    for params in ({"creator": "\u0000"}, {"tags": "\u0000"}):
        listed = await client.get("/api/v1/characters", params=params, headers=alice.headers)
        assert listed.status_code == 422 and error_code(listed) == "validation_error"
    card = {"spec": "chara_card_v2", "data": {"name": "x", "description": "\u0000"}}
    files = {"file": ("c.json", json.dumps(card).encode(), "application/json")}
    imported = await client.post("/api/v1/characters/import", files=files, headers=alice.headers)
    assert imported.status_code == 422 and "NUL" in imported.json()["error"]["message"]


@pytest.mark.parametrize("depth", [300, 100_000])
async def test_deeply_nested_json_is_422_and_nothing_is_stored(
    client: AsyncClient, alice: Caller, depth: int
) -> None:
    before = (await client.get("/api/v1/characters/mine", headers=alice.headers)).json()["total"]
    for field in ("metadata", "extensions", "character_book"):
        body = '{"name": "Deep", "' + field + '": {"k": ' + "[" * depth + "]" * depth + "}}"
        response = await client.post(
            "/api/v1/characters", content=body, headers={**alice.headers, "Content-Type": "application/json"}
        )
        assert response.status_code == 422, field
        assert error_code(response) == "validation_error"
        assert response.json()["error"]["message"] == "JSON is nested deeper than 64 levels"
    after = (await client.get("/api/v1/characters/mine", headers=alice.headers)).json()["total"]
    assert after == before


async def test_database_error_text_stays_out_of_the_body(
    client: AsyncClient, alice: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="chat_common.database")
    response = await client.get(
        "/api/v1/characters", params={"creator": "a\u0000"}, headers={**alice.headers, "X-Request-ID": "pg-1"}
    )
    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "validation_error",
        "message": "A value in the request is out of range or not valid text",
        "details": None,
        "request_id": "pg-1",
    }
    logged = [r for r in caplog.records if r.name == "chat_common.database"]
    assert len(logged) == 1 and logged[0].levelno == logging.WARNING
    assert 'invalid byte sequence for encoding "UTF8": 0x00' in logged[0].getMessage()
    assert getattr(logged[0], "correlation_id", None) == "pg-1"


@pytest.mark.parametrize("name", ["  ", "\t\n", "\u3000 \u00a0"])
async def test_a_name_of_only_whitespace_is_422_on_create_put_and_patch(
    client: AsyncClient, alice: Caller, make_character: CharacterFactory, name: str
) -> None:
    created = await client.post("/api/v1/characters", json={"name": name}, headers=alice.headers)
    assert created.status_code == 422, created.text
    assert error_code(created) == "validation_error"
    assert created.json()["error"]["details"][0]["loc"] == ["body", "name"]
    character = await make_character(alice, name="Mira")
    url = f"/api/v1/characters/{character['id']}"
    for method in ("PUT", "PATCH"):
        response = await client.request(method, url, json={"name": name}, headers=alice.headers)
        assert response.status_code == 422, (method, response.text)
        assert error_code(response) == "validation_error"
    assert (await client.get(url, headers=alice.headers)).json()["name"] == "Mira"


async def test_names_are_stored_without_surrounding_whitespace(
    client: AsyncClient, alice: Caller, make_character: CharacterFactory
) -> None:
    character = await make_character(alice, name="  Captain Mira \n")
    assert character["name"] == "Captain Mira"
    url = f"/api/v1/characters/{character['id']}"
    patched = await client.patch(url, json={"name": "\tMira Vance "}, headers=alice.headers)
    assert patched.status_code == 200 and patched.json()["name"] == "Mira Vance"


async def test_tags_are_stripped_and_a_blank_tag_is_422(
    client: AsyncClient, alice: Caller, make_character: CharacterFactory
) -> None:
    blank = await client.post(
        "/api/v1/characters", json={"name": "Mira", "tags": ["ok", " \t "]}, headers=alice.headers
    )
    assert blank.status_code == 422 and error_code(blank) == "validation_error"
    assert blank.json()["error"]["details"][0]["loc"] == ["body", "tags", "1"]
    character = await make_character(alice, name="Mira", tags=[" space opera ", "pilot"])
    assert character["tags"] == ["space opera", "pilot"]


async def test_a_blank_name_stored_before_names_were_stripped_still_reads_and_exports(
    app: FastAPI, client: AsyncClient, alice: Caller, make_character: CharacterFactory
) -> None:
    character = await make_character(alice, name="Soon blank")
    async with app.state.sessionmaker() as session:
        await session.execute(update(Character).where(Character.id == character["id"]).values(name="   "))
        await session.commit()
    url = f"/api/v1/characters/{character['id']}"
    read = await client.get(url, headers=alice.headers)
    assert read.status_code == 200 and read.json()["name"] == "   "
    exported = await client.get(f"{url}/export", params={"format": "json"}, headers=alice.headers)
    assert exported.status_code == 200
    assert exported.headers["content-disposition"] == (
        "attachment; filename=\"character.json\"; filename*=UTF-8''character.json"
    )
