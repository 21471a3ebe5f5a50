"""Catalogue filters as a newcomer writes them: tags repeated or comma-separated, the card's creator,
the owning account, and the caller's own characters."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from httpx import AsyncClient

from app.characters.tests.conftest import Caller, CharacterFactory, error_code


async def _ids(client: AsyncClient, caller: Caller, params: Any) -> set[str]:
    response = await client.get("/api/v1/characters", params=params, headers=caller.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == len(body["items"])
    return {c["id"] for c in body["items"]}


@pytest.fixture
def tag() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize(
    "query",
    [
        "tags={a},{b}",
        "tags={a}&tags={b}",
        "tags={a},%20{b}",
        "tags={a},{b}&tags={a}",
        "tags={a},,{b},",
    ],
)
async def test_tags_repeated_or_comma_separated_are_all_required(
    client: AsyncClient, alice: Caller, make_character: CharacterFactory, tag: str, query: str
) -> None:
    a, b = f"{tag}-a", f"{tag}-b"
    both = await make_character(alice, visibility="public", tags=[a, b])
    await make_character(alice, visibility="public", tags=[a])

    response = await client.get(f"/api/v1/characters?{query.format(a=a, b=b)}", headers=alice.headers)

    assert response.status_code == 200
    assert [c["id"] for c in response.json()["items"]] == [both["id"]]


async def test_one_tag_matches_every_character_having_it(
    client: AsyncClient, alice: Caller, make_character: CharacterFactory, tag: str
) -> None:
    first = await make_character(alice, visibility="public", tags=[tag, "x"])
    second = await make_character(alice, visibility="public", tags=[tag])
    assert await _ids(client, alice, {"tags": tag}) == {first["id"], second["id"]}


async def test_more_than_ten_tags_is_422(client: AsyncClient, alice: Caller) -> None:
    tags = ",".join(f"tag{i}" for i in range(11))
    response = await client.get("/api/v1/characters", params={"tags": tags}, headers=alice.headers)
    assert response.status_code == 422 and error_code(response) == "validation_error"
    assert "10 tags" in response.json()["error"]["message"]


async def test_creator_is_the_cards_creator_field_not_the_owner(
    client: AsyncClient, alice: Caller, make_character: CharacterFactory
) -> None:
    author = f"Quill {uuid.uuid4().hex[:6]}"
    made = await make_character(alice, visibility="public", creator=author)

    assert await _ids(client, alice, {"creator": author.lower()}) == {made["id"]}
    assert await _ids(client, alice, {"creator": alice.id}) == set()


async def test_owner_filter_shows_others_only_their_public_characters(
    client: AsyncClient, alice: Caller, bob: Caller, make_character: CharacterFactory
) -> None:
    shown = await make_character(alice, visibility="public")
    unlisted = await make_character(alice, visibility="unlisted")
    private = await make_character(alice, visibility="private")
    await make_character(bob, visibility="public")

    assert await _ids(client, bob, {"owner_id": alice.id}) == {shown["id"]}
    assert await _ids(client, alice, {"owner_id": alice.id}) == {shown["id"], unlisted["id"], private["id"]}


async def test_mine_lists_the_callers_own_characters_and_combines_with_search(
    client: AsyncClient, alice: Caller, bob: Caller, make_character: CharacterFactory, tag: str
) -> None:
    word = f"zq{uuid.uuid4().hex[:6]}"
    own_private = await make_character(alice, visibility="private", name=f"{word} one", tags=[tag])
    own_public = await make_character(alice, visibility="public", name=f"{word} two")
    await make_character(bob, visibility="public", name=f"{word} three", tags=[tag])

    assert await _ids(client, alice, {"mine": "true"}) == {own_private["id"], own_public["id"]}
    assert await _ids(client, alice, {"mine": "true", "q": word, "tags": tag}) == {own_private["id"]}
    assert len(await _ids(client, alice, {"q": word})) == 2  # without mine: the public ones of anyone


async def test_mine_with_someone_elses_owner_id_is_422(
    client: AsyncClient, alice: Caller, bob: Caller
) -> None:
    params = {"mine": "true", "owner_id": bob.id}
    response = await client.get("/api/v1/characters", params=params, headers=alice.headers)
    assert response.status_code == 422 and error_code(response) == "validation_error"


async def test_mine_needs_a_user_token(client: AsyncClient, service_headers: dict[str, str]) -> None:
    response = await client.get("/api/v1/characters", params={"mine": "true"}, headers=service_headers)
    assert response.status_code == 403 and error_code(response) == "forbidden"


async def test_filters_are_documented_in_openapi(client: AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    parameters = {p["name"]: p for p in document["paths"]["/api/v1/characters"]["get"]["parameters"]}

    assert "all" in parameters["tags"]["description"] and "comma" in parameters["tags"]["description"]
    assert "owner_id" in parameters["creator"]["description"]
    assert {"owner_id", "mine"} <= set(parameters)
