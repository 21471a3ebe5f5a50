"""Who may call what: users vs services vs admins, and nobody reaches another user's data."""

from __future__ import annotations

import uuid

import pytest
from httpx import AsyncClient

from tests.conftest import UserFactory, assert_error_shape, service_token


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        (
            "POST",
            "/api/v1/credits/reservations",
            {"user_id": str(uuid.uuid4()), "amount": 1, "idempotency_key": "k"},
        ),
        ("POST", f"/api/v1/credits/reservations/{uuid.uuid4()}/commit", {"amount": 1}),
        ("POST", f"/api/v1/credits/reservations/{uuid.uuid4()}/release", None),
        ("GET", f"/api/v1/credits/reservations/{uuid.uuid4()}", None),
    ],
)
async def test_user_token_cannot_call_service_credit_endpoints(
    client: AsyncClient, make_user: UserFactory, method: str, path: str, body: dict[str, object] | None
) -> None:
    user = await make_user()
    response = await client.request(method, path, json=body, headers=user.headers)
    assert response.status_code == 403
    assert_error_shape(response.json(), "forbidden")


async def test_service_token_without_credits_scope_is_403(
    client: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    headers = await service_token(client, scope="characters:counters")
    response = await client.post(
        "/api/v1/credits/reservations",
        json={"user_id": user.id, "amount": 1, "idempotency_key": "k"},
        headers=headers,
    )
    assert response.status_code == 403
    assert "credits:write" in response.json()["error"]["message"]


async def test_service_token_cannot_use_user_endpoints(
    client: AsyncClient, service_headers: dict[str, str]
) -> None:
    response = await client.get("/api/v1/users/me", headers=service_headers)
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/admin/users"),
        ("GET", f"/api/v1/admin/users/{uuid.uuid4()}"),
        ("PATCH", f"/api/v1/admin/users/{uuid.uuid4()}"),
        ("POST", f"/api/v1/admin/users/{uuid.uuid4()}/credits"),
    ],
)
async def test_normal_user_cannot_reach_admin_endpoints(
    client: AsyncClient, make_user: UserFactory, method: str, path: str
) -> None:
    user = await make_user()
    response = await client.request(
        method, path, json={"amount": 5, "reason": "x", "role": "admin"}, headers=user.headers
    )
    assert response.status_code == 403
    assert_error_shape(response.json(), "forbidden")


async def test_user_gets_404_for_another_users_profile(client: AsyncClient, make_user: UserFactory) -> None:
    alice, bob = await make_user(), await make_user()
    response = await client.get(f"/api/v1/users/{bob.id}", headers=alice.headers)
    assert response.status_code == 404
    assert_error_shape(response.json(), "not_found")
    own = await client.get(f"/api/v1/users/{alice.id}", headers=alice.headers)
    assert own.status_code == 200 and own.json()["email"] == alice.email


async def test_credit_endpoints_show_only_the_callers_own_ledger(
    client: AsyncClient, make_user: UserFactory
) -> None:
    alice, bob = await make_user(), await make_user()
    alice_ledger = (await client.get("/api/v1/credits/transactions", headers=alice.headers)).json()
    bob_ledger = (await client.get("/api/v1/credits/transactions", headers=bob.headers)).json()
    assert alice_ledger["total"] == bob_ledger["total"] == 1
    assert alice_ledger["items"][0]["id"] != bob_ledger["items"][0]["id"]


async def test_admin_reads_any_user(
    client: AsyncClient, make_user: UserFactory, admin_headers: dict[str, str]
) -> None:
    bob = await make_user()
    response = await client.get(f"/api/v1/users/{bob.id}", headers=admin_headers)
    assert response.status_code == 200 and response.json()["username"] == bob.username
