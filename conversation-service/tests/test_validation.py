"""Bad input gets a clear 4xx in the shared error shape, never a 500."""

from __future__ import annotations

import httpx
import pytest

from chat_common.testing.fleet import FleetUser


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["message"] and error["request_id"]
    if code:
        assert error["code"] == code


@pytest.mark.parametrize(
    "conversation_id", ["not-an-id", "0" * 25, "zzzzzzzzzzzzzzzzzzzzzzzz", "%24where", "ｘ" * 12]
)
async def test_an_id_that_is_no_object_id_is_404(
    client: httpx.AsyncClient, alice: FleetUser, conversation_id: str
) -> None:
    path = f"/api/v1/conversations/{conversation_id}"

    for response in (
        await client.get(path, headers=alice.headers),
        await client.patch(path, json={"title": "x"}, headers=alice.headers),
        await client.delete(path, headers=alice.headers),
        await client.post(f"{path}/refresh-character", headers=alice.headers),
    ):
        assert_error(response, 404, "conversation_not_found")


@pytest.mark.parametrize(
    "body",
    [
        {"character_id": "not-a-uuid"},
        {},
        {"character_id": "0b6a5f4e-7a4e-4d55-9b0f-4d3a3f8b1c2d", "owner": "someone-else"},
        {"character_id": "0b6a5f4e-7a4e-4d55-9b0f-4d3a3f8b1c2d", "title": "x" * 201},
        {"character_id": "0b6a5f4e-7a4e-4d55-9b0f-4d3a3f8b1c2d", "title": "   "},
        {"character_id": "0b6a5f4e-7a4e-4d55-9b0f-4d3a3f8b1c2d", "title": "bell\x07"},
        {"character_id": "0b6a5f4e-7a4e-4d55-9b0f-4d3a3f8b1c2d", "title": "nul\x00"},
        {"character_id": "0b6a5f4e-7a4e-4d55-9b0f-4d3a3f8b1c2d", "persona_id": "default"},
        {"character_id": {"$gt": ""}},
        ["character_id"],
    ],
)
async def test_a_bad_create_body_is_422(client: httpx.AsyncClient, alice: FleetUser, body: object) -> None:
    response = await client.post("/api/v1/conversations", json=body, headers=alice.headers)

    assert_error(response, 422, "validation_error")


async def test_unusual_but_valid_titles_are_kept(
    client: httpx.AsyncClient, start_conversation, alice: FleetUser
) -> None:
    title = "Чай на дирижабле 🚀 " + "日本語" * 60
    conversation = await start_conversation(alice, title=title[:200])

    assert conversation["title"] == title[:200].strip()


@pytest.mark.parametrize(
    "title",
    ["\u200b", "\ufeff \u200d", "evil\u202eexe.txt", "isolate\u2066x\u2069", "two\u2028lines", "p\u2029q"],
)
async def test_invisible_and_direction_overriding_titles_are_422(
    client: httpx.AsyncClient, start_conversation, alice: FleetUser, title: str
) -> None:
    conversation = await start_conversation(alice, title="kept")
    path = f"/api/v1/conversations/{conversation['id']}"

    response = await client.patch(path, json={"title": title}, headers=alice.headers)

    assert_error(response, 422, "validation_error")
    assert (await client.get(path, headers=alice.headers)).json()["title"] == "kept"


async def test_emoji_sequences_with_joiners_are_valid_titles(
    client: httpx.AsyncClient, start_conversation, alice: FleetUser
) -> None:
    title = "👩\u200d🚀 family 👨\u200d👩\u200d👧 ❤\ufe0f العربية"

    conversation = await start_conversation(alice, title=title)

    assert conversation["title"] == title


@pytest.mark.parametrize(
    "body",
    [
        {"version": 7},
        {"status": "deleted"},
        {"archived": "maybe"},
        {"pinned": [True]},
        {"title": "y" * 201},
        {"persona_id": 5},
        {"user_id": "a-takeover"},
    ],
)
async def test_a_bad_patch_body_is_422_and_changes_nothing(
    client: httpx.AsyncClient, start_conversation, alice: FleetUser, body: dict[str, object]
) -> None:
    conversation = await start_conversation(alice)
    path = f"/api/v1/conversations/{conversation['id']}"

    response = await client.patch(path, json=body, headers=alice.headers)
    after = await client.get(path, headers=alice.headers)

    assert_error(response, 422, "validation_error")
    assert after.json() == conversation


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=101", "offset=-1", "status=deleted", "character_id=abc", "limit=many"],
)
async def test_bad_list_parameters_are_422(client: httpx.AsyncClient, alice: FleetUser, query: str) -> None:
    response = await client.get(f"/api/v1/conversations?{query}", headers=alice.headers)

    assert_error(response, 422, "validation_error")


async def test_oversized_and_deeply_nested_bodies_are_refused_before_parsing(
    client: httpx.AsyncClient, alice: FleetUser
) -> None:
    huge = await client.post(
        "/api/v1/conversations",
        content=b'{"title": "' + b"x" * 70_000 + b'"}',
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    deep = await client.post(
        "/api/v1/conversations",
        content=b"[" * 10_000 + b"]" * 10_000,
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    not_json = await client.post(
        "/api/v1/conversations",
        content=b"{oops",
        headers={**alice.headers, "Content-Type": "application/json"},
    )

    assert_error(huge, 413)
    assert 400 <= deep.status_code < 500 and deep.json()["error"]["code"]
    assert_error(not_json, 422)


async def test_requests_without_a_valid_token_are_401(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic abc"}):
        response = await client.get("/api/v1/conversations", headers=headers)
        assert_error(response, 401)
