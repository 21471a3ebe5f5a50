"""Metadata: read, replace, JSON merge patch, size limit, ownership."""

from __future__ import annotations

from httpx import AsyncClient

from app.characters.tests.conftest import Caller, CharacterFactory, error_code


async def test_put_then_merge_patch(
    client: AsyncClient, alice: Caller, make_character: CharacterFactory
) -> None:
    character = await make_character(alice)
    url = f"/api/v1/characters/{character['id']}/metadata"
    put = await client.put(
        url, json={"a": 1, "nested": {"x": 1, "y": 2}, "drop": True}, headers=alice.headers
    )
    assert put.json() == {"a": 1, "nested": {"x": 1, "y": 2}, "drop": True}
    patch = await client.patch(
        url,
        content=b'{"nested": {"y": null, "z": 3}, "drop": null, "b": [1, 2]}',
        headers={**alice.headers, "Content-Type": "application/merge-patch+json"},
    )
    assert patch.status_code == 200
    expected = {"a": 1, "nested": {"x": 1, "z": 3}, "b": [1, 2]}
    assert patch.json() == expected
    assert (await client.get(url, headers=alice.headers)).json() == expected
    detail = (await client.get(f"/api/v1/characters/{character['id']}", headers=alice.headers)).json()
    assert detail["metadata"] == expected and detail["version"] == 3


async def test_metadata_size_limit_is_413(
    client: AsyncClient, alice: Caller, make_character: CharacterFactory
) -> None:
    character = await make_character(alice)
    url = f"/api/v1/characters/{character['id']}/metadata"
    response = await client.put(url, json={"blob": "x" * 20_000}, headers=alice.headers)
    assert response.status_code == 413 and error_code(response) == "metadata_too_large"
    created = await client.post(
        "/api/v1/characters", json={"name": "big", "metadata": {"b": "x" * 20_000}}, headers=alice.headers
    )
    assert created.status_code == 413


async def test_metadata_must_be_an_object(
    client: AsyncClient, alice: Caller, make_character: CharacterFactory
) -> None:
    character = await make_character(alice)
    response = await client.put(
        f"/api/v1/characters/{character['id']}/metadata", json=[1, 2], headers=alice.headers
    )
    assert response.status_code == 422


async def test_others_cannot_change_metadata(
    client: AsyncClient, alice: Caller, bob: Caller, make_character: CharacterFactory
) -> None:
    public = await make_character(alice, visibility="public")
    private = await make_character(alice)
    assert (
        await client.get(f"/api/v1/characters/{public['id']}/metadata", headers=bob.headers)
    ).status_code == 200
    denied = await client.patch(
        f"/api/v1/characters/{public['id']}/metadata", json={"a": 1}, headers=bob.headers
    )
    assert denied.status_code == 403
    hidden = await client.get(f"/api/v1/characters/{private['id']}/metadata", headers=bob.headers)
    assert hidden.status_code == 404
