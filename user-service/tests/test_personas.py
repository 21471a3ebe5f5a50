"""Personas: the caller's own CRUD, one default, the per-user limit, bad input, the internal read."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from httpx import AsyncClient, Response

from tests.conftest import AppUser, UserFactory, assert_error_shape, service_token

PERSONAS = "/api/v1/users/me/personas"


def internal(user_id: str, persona: str) -> str:
    return f"/api/v1/internal/users/{user_id}/personas/{persona}"


async def create(client: AsyncClient, user: AppUser, **fields: Any) -> dict[str, Any]:
    response = await client.post(PERSONAS, json={"name": "Traveller", **fields}, headers=user.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def listed(client: AsyncClient, user: AppUser, **params: Any) -> dict[str, Any]:
    response = await client.get(PERSONAS, params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def reader_headers(client: AsyncClient, scope: str = "personas:read") -> dict[str, str]:
    """A conversation-service token (the client that reads personas)."""
    return await service_token(client, scope, client_id="conversation-service")


async def test_create_read_update_delete_persona(client: AsyncClient, make_user: UserFactory) -> None:
    user = await make_user()

    created = await client.post(
        PERSONAS,
        json={
            "name": "  Ada  ",
            "description": "A curious mathematician.",
            "avatar_url": "https://x.test/a.png",
        },
        headers=user.headers,
    )
    assert created.status_code == 201, created.text
    persona = created.json()
    assert set(persona) == {
        "id",
        "name",
        "description",
        "avatar_url",
        "is_default",
        "created_at",
        "updated_at",
    }
    assert (persona["name"], persona["description"], persona["avatar_url"]) == (
        "Ada",
        "A curious mathematician.",
        "https://x.test/a.png",
    )
    path = f"{PERSONAS}/{persona['id']}"
    assert (await client.get(path, headers=user.headers)).json() == persona

    patched = await client.patch(path, json={"name": "Ada L.", "avatar_url": None}, headers=user.headers)
    assert patched.status_code == 200, patched.text
    assert (patched.json()["name"], patched.json()["avatar_url"]) == ("Ada L.", None)
    assert patched.json()["description"] == "A curious mathematician."

    deleted = await client.delete(path, headers=user.headers)
    assert deleted.status_code == 204
    gone = await client.get(path, headers=user.headers)
    assert gone.status_code == 404
    assert_error_shape(gone.json(), "persona_not_found")
    assert (await listed(client, user))["total"] == 0


async def test_list_is_default_first_then_oldest_with_limit_and_offset(
    client: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    first = await create(client, user, name="One")
    second = await create(client, user, name="Two")
    third = await create(client, user, name="Three", is_default=True)

    page = await listed(client, user)
    assert [p["id"] for p in page["items"]] == [third["id"], first["id"], second["id"]]
    assert (page["total"], page["limit"], page["offset"]) == (3, 20, 0)
    window = await listed(client, user, limit=1, offset=1)
    assert [p["id"] for p in window["items"]] == [first["id"]]
    assert (window["total"], window["limit"], window["offset"]) == (3, 1, 1)


async def test_first_persona_becomes_default_later_ones_do_not(
    client: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    first = await create(client, user)
    second = await create(client, user)
    assert (first["is_default"], second["is_default"]) == (True, False)


async def test_first_persona_can_be_created_not_default(client: AsyncClient, make_user: UserFactory) -> None:
    user = await make_user()
    assert (await create(client, user, is_default=False))["is_default"] is False


async def test_making_a_persona_default_clears_the_previous_one(
    client: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    first = await create(client, user)
    second = await create(client, user)

    switched = await client.patch(
        f"{PERSONAS}/{second['id']}", json={"is_default": True}, headers=user.headers
    )
    assert switched.status_code == 200, switched.text
    assert switched.json()["is_default"] is True
    defaults = {p["id"]: p["is_default"] for p in (await listed(client, user))["items"]}
    assert defaults == {first["id"]: False, second["id"]: True}

    again = await client.patch(f"{PERSONAS}/{second['id']}", json={"is_default": True}, headers=user.headers)
    assert again.json()["is_default"] is True
    created_default = await create(client, user, is_default=True)
    defaults = {p["id"]: p["is_default"] for p in (await listed(client, user))["items"]}
    assert defaults == {first["id"]: False, second["id"]: False, created_default["id"]: True}


async def test_unsetting_or_deleting_the_default_leaves_none(
    client: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    first = await create(client, user)
    second = await create(client, user)

    unset = await client.patch(f"{PERSONAS}/{first['id']}", json={"is_default": False}, headers=user.headers)
    assert unset.json()["is_default"] is False
    await client.patch(f"{PERSONAS}/{second['id']}", json={"is_default": True}, headers=user.headers)
    assert (await client.delete(f"{PERSONAS}/{second['id']}", headers=user.headers)).status_code == 204

    assert [p["is_default"] for p in (await listed(client, user))["items"]] == [False]


async def test_other_users_persona_is_404_on_every_route(client: AsyncClient, make_user: UserFactory) -> None:
    owner, other = await make_user(), await make_user()
    persona = await create(client, owner)
    path = f"{PERSONAS}/{persona['id']}"

    responses = [
        await client.get(path, headers=other.headers),
        await client.patch(path, json={"name": "Mine now"}, headers=other.headers),
        await client.patch(path, json={"is_default": True}, headers=other.headers),
        await client.delete(path, headers=other.headers),
        await client.get(f"{PERSONAS}/00000000-0000-4000-8000-000000000000", headers=owner.headers),
    ]
    for response in responses:
        assert response.status_code == 404, response.text
        assert_error_shape(response.json(), "persona_not_found")
    assert (await listed(client, other))["total"] == 0
    unchanged = await client.get(path, headers=owner.headers)
    assert unchanged.json() == persona


async def test_concurrent_default_switches_leave_exactly_one_default(
    client: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    personas = [await create(client, user, name=f"P{i}") for i in range(8)]

    for _ in range(3):
        responses = await asyncio.gather(
            *[
                client.patch(f"{PERSONAS}/{p['id']}", json={"is_default": True}, headers=user.headers)
                for p in personas
            ]
        )
        assert [r.status_code for r in responses] == [200] * len(personas)
        items = (await listed(client, user))["items"]
        assert sum(p["is_default"] for p in items) == 1
        assert items[0]["is_default"] is True


async def test_at_most_20_personas_then_409_persona_limit(
    client: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    personas = [await create(client, user, name=f"P{i}") for i in range(20)]

    refused = await client.post(PERSONAS, json={"name": "Twenty-first"}, headers=user.headers)
    assert refused.status_code == 409
    assert_error_shape(refused.json(), "persona_limit")
    assert refused.json()["error"]["details"] == {"limit": 20}

    await client.delete(f"{PERSONAS}/{personas[0]['id']}", headers=user.headers)
    await create(client, user, name="Fits again")
    assert (await listed(client, user))["total"] == 20


async def test_30_concurrent_creates_give_exactly_20(client: AsyncClient, make_user: UserFactory) -> None:
    user = await make_user()

    responses: list[Response] = await asyncio.gather(
        *[client.post(PERSONAS, json={"name": f"P{i}"}, headers=user.headers) for i in range(30)]
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 20 + [409] * 10
    for response in responses:
        if response.status_code == 409:
            assert_error_shape(response.json(), "persona_limit")
    page = await listed(client, user, limit=100)
    assert page["total"] == 20
    assert sum(p["is_default"] for p in page["items"]) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"name": "   "},
        {"name": ""},
        {"name": "x" * 101},
        {"name": 5},
        {"name": "Ok", "description": "d" * 2001},
        {"name": "Ok", "avatar_url": "javascript:alert(1)"},
        {"name": "Ok", "avatar_url": "data:image/png;base64,AAAA"},
        {"name": "Ok", "avatar_url": "/relative/path.png"},
        {"name": "Ok", "avatar_url": "https://"},
        {"name": "Ok", "avatar_url": "https://x.test/" + "a" * 2048},
        {"name": "Ok", "unknown": 1},
        {"name": "Ok\x00"},
        {"name": "Ok", "description": "\x00"},
        {"name": "Ok", "is_default": "yes"},
        {"description": "no name"},
    ],
)
async def test_bad_create_bodies_are_422(
    client: AsyncClient, make_user: UserFactory, body: dict[str, Any]
) -> None:
    user = await make_user()
    response = await client.post(PERSONAS, json=body, headers=user.headers)
    assert response.status_code == 422, response.text
    assert_error_shape(response.json(), "validation_error")
    assert (await listed(client, user))["total"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"name": None},
        {"name": "  "},
        {"description": None},
        {"is_default": None},
        {"description": "d" * 2001},
        {"avatar_url": "javascript:alert(1)"},
        {"user_id": "00000000-0000-4000-8000-000000000000"},
        {"name": "a\x00b"},
    ],
)
async def test_bad_update_bodies_are_422(
    client: AsyncClient, make_user: UserFactory, body: dict[str, Any]
) -> None:
    user = await make_user()
    persona = await create(client, user)
    response = await client.patch(f"{PERSONAS}/{persona['id']}", json=body, headers=user.headers)
    assert response.status_code == 422, response.text
    assert_error_shape(response.json(), "validation_error")
    assert (await client.get(f"{PERSONAS}/{persona['id']}", headers=user.headers)).json() == persona


async def test_limits_themselves_are_accepted(client: AsyncClient, make_user: UserFactory) -> None:
    user = await make_user()
    url = "http://x.test/" + "a" * (2048 - len("http://x.test/"))
    persona = await create(client, user, name="n" * 100, description="d" * 2000, avatar_url=url)
    assert (len(persona["name"]), len(persona["description"]), persona["avatar_url"]) == (100, 2000, url)


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_non_uuid_persona_id_is_422(client: AsyncClient, make_user: UserFactory, method: str) -> None:
    user = await make_user()
    response = await client.request(method, f"{PERSONAS}/not-a-uuid", json={}, headers=user.headers)
    assert response.status_code == 422, response.text
    assert_error_shape(response.json(), "validation_error")


async def test_internal_read_by_id_and_default_with_display_name(
    client: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user(display_name="Ada Lovelace")
    first = await create(client, user, name="Countess", description="Writes notes.")
    second = await create(client, user, name="Enchantress")
    headers = await reader_headers(client)

    by_id = await client.get(internal(user.id, second["id"]), headers=headers)
    default = await client.get(internal(user.id, "default"), headers=headers)

    assert by_id.status_code == 200, by_id.text
    assert by_id.json() == {**second, "user_id": user.id, "user_display_name": "Ada Lovelace"}
    assert default.status_code == 200, default.text
    assert default.json() == {**first, "user_id": user.id, "user_display_name": "Ada Lovelace"}


async def test_internal_default_is_404_when_none_with_the_display_name(
    client: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user(display_name="Grace Hopper")
    headers = await reader_headers(client)

    response = await client.get(internal(user.id, "default"), headers=headers)

    assert response.status_code == 404
    assert_error_shape(response.json(), "persona_not_found")
    assert response.json()["error"]["details"] == {"user_display_name": "Grace Hopper"}


async def test_internal_read_of_another_users_or_unknown_persona_is_404(
    client: AsyncClient, make_user: UserFactory
) -> None:
    owner, other = await make_user(), await make_user()
    persona = await create(client, owner)
    headers = await reader_headers(client)

    wrong_user = await client.get(internal(other.id, persona["id"]), headers=headers)
    unknown_user = await client.get(
        internal("00000000-0000-4000-8000-000000000000", persona["id"]), headers=headers
    )
    bad_id = await client.get(internal(owner.id, "not-a-uuid"), headers=headers)

    assert wrong_user.status_code == 404
    assert_error_shape(wrong_user.json(), "persona_not_found")
    assert unknown_user.status_code == 404
    assert_error_shape(unknown_user.json(), "user_not_found")
    assert bad_id.status_code == 422


async def test_internal_routes_refuse_user_tokens_and_missing_scope(
    client: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    persona = await create(client, user)
    without_scope = await reader_headers(client, scope="characters:counters")
    other_client = await service_token(client, scope="credits:write")

    for path in (internal(user.id, persona["id"]), internal(user.id, "default")):
        for headers in (user.headers, without_scope, other_client):
            response = await client.get(path, headers=headers)
            assert response.status_code == 403, response.text
            assert_error_shape(response.json(), "forbidden")
        assert (await client.get(path)).status_code == 401


async def test_deactivated_account_personas_are_not_readable(
    client: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    persona = await create(client, user)
    headers = await reader_headers(client)

    assert (await client.delete("/api/v1/users/me", headers=user.headers)).status_code == 204

    for path in (internal(user.id, persona["id"]), internal(user.id, "default")):
        response = await client.get(path, headers=headers)
        assert response.status_code == 404
        assert_error_shape(response.json(), "user_not_found")
    own = await client.get(PERSONAS, headers=user.headers)
    assert own.status_code == 401
