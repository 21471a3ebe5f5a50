"""Catalogue search, ranking, tag filter, sorts and pagination over 1,000 characters; tag counts."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.characters.tests.conftest import Caller, CharacterFactory, error_code
from app.models import Character

SEED = 1000


@pytest.fixture(scope="module")
async def seeded(app: FastAPI) -> dict[str, Any]:
    """1,000 public characters, all tagged with a marker so these tests see only them."""
    marker = f"seed-{uuid.uuid4().hex[:8]}"
    owner = uuid.uuid4()
    rows = [
        Character(
            owner_id=owner,
            name=f"Seed {i:04d}",
            description=f"seeded character number {i}",
            tags=[marker, "even" if i % 2 == 0 else "odd", *(["fizz"] if i % 3 == 0 else [])],
            visibility="public",
            conversation_count=i % 97,
            message_count=i,
        )
        for i in range(SEED)
    ]
    async with app.state.sessionmaker() as session:
        session.add_all(rows)
        await session.commit()
    return {"marker": marker, "owner": owner}


async def _list(client: AsyncClient, caller: Caller, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/v1/characters", params=params, headers=caller.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_name_match_ranks_above_description_match(
    client: AsyncClient, alice: Caller, make_character: CharacterFactory
) -> None:
    word = f"zorblax{uuid.uuid4().hex[:4]}"
    in_description = await make_character(
        alice, visibility="public", name="Plain", description=f"loves {word}"
    )
    in_name = await make_character(
        alice, visibility="public", name=f"{word.title()} the Bold", description="x"
    )
    in_tags = await make_character(alice, visibility="public", name="Other", tags=[word])
    found = await _list(client, alice, q=word)
    assert [c["id"] for c in found["items"]] == [in_name["id"], in_tags["id"], in_description["id"]]


async def test_search_matches_word_prefixes_and_unicode(
    client: AsyncClient, alice: Caller, make_character: CharacterFactory
) -> None:
    created = await make_character(
        alice, visibility="public", name="Ästrid Møller 🌙", description="nocturnal"
    )
    assert created["id"] in [c["id"] for c in (await _list(client, alice, q="ästr"))["items"]]
    assert created["id"] in [c["id"] for c in (await _list(client, alice, q="NOCTURN"))["items"]]


async def test_tag_filter_is_all_of(client: AsyncClient, alice: Caller, seeded: dict[str, Any]) -> None:
    both = await _list(client, alice, tags=[seeded["marker"], "even", "fizz"], limit=100)
    assert both["total"] == len([i for i in range(SEED) if i % 2 == 0 and i % 3 == 0])
    assert all({"even", "fizz"} <= set(c["tags"]) for c in both["items"])


async def test_pagination_covers_everything_once(
    client: AsyncClient, alice: Caller, seeded: dict[str, Any]
) -> None:
    seen: list[str] = []
    for offset in range(0, SEED, 100):
        page = await _list(client, alice, tags=[seeded["marker"]], limit=100, offset=offset, sort="name")
        assert page["total"] == SEED and page["limit"] == 100 and page["offset"] == offset
        seen += [c["id"] for c in page["items"]]
    assert len(seen) == len(set(seen)) == SEED


@pytest.mark.parametrize(
    ("sort", "key", "reverse"),
    [("name", "name", False), ("newest", "created_at", True), ("popular", "conversation_count", True)],
)
async def test_sorts(
    client: AsyncClient, alice: Caller, seeded: dict[str, Any], sort: str, key: str, reverse: bool
) -> None:
    page = await _list(client, alice, tags=[seeded["marker"]], limit=100, sort=sort)
    values = [c[key] for c in page["items"]]
    assert values == sorted(values, reverse=reverse)
    if sort == "popular":
        assert values[0] == 96
    if sort == "name":
        assert values[0] == "Seed 0000"


async def test_creator_filter(client: AsyncClient, alice: Caller, make_character: CharacterFactory) -> None:
    name = f"maker-{uuid.uuid4().hex[:6]}"
    made = await make_character(alice, visibility="public", creator=name)
    found = await _list(client, alice, creator=name.upper())
    assert [c["id"] for c in found["items"]] == [made["id"]]


async def test_tags_are_counted(client: AsyncClient, alice: Caller, seeded: dict[str, Any]) -> None:
    counts = (await client.get("/api/v1/tags", params={"limit": 100}, headers=alice.headers)).json()
    by_tag = {t["tag"]: t["count"] for t in counts["items"]}
    assert by_tag[seeded["marker"]] == SEED
    assert by_tag["fizz"] == len([i for i in range(SEED) if i % 3 == 0])  # only the seed uses it


async def test_query_without_words_is_422(client: AsyncClient, alice: Caller) -> None:
    response = await client.get("/api/v1/characters", params={"q": "!!! ???"}, headers=alice.headers)
    assert response.status_code == 422 and error_code(response) == "validation_error"


async def test_oversized_page_is_422(client: AsyncClient, alice: Caller) -> None:
    assert (await client.get("/api/v1/characters?limit=1000", headers=alice.headers)).status_code == 422
