"""Registration, login, refresh rotation, logout and login rate limits."""

from __future__ import annotations

import uuid

import pytest
from httpx import AsyncClient

from tests.conftest import PASSWORD, UserFactory, assert_error_shape, login


def _new_user(**overrides: str) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:10]
    return {
        "email": f"new{suffix}@example.com",
        "username": f"new{suffix}",
        "display_name": "New User",
        "password": PASSWORD,
        **overrides,
    }


async def test_register_returns_profile_with_initial_credits_and_a_ledger_row(client: AsyncClient) -> None:
    body = _new_user()
    response = await client.post("/api/v1/auth/register", json=body)
    assert response.status_code == 201
    user = response.json()
    assert user["email"] == body["email"] and user["role"] == "user" and user["credits"] == 100
    assert "password" not in response.text and "password_hash" not in user
    tokens = await login(client, body["username"], PASSWORD)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    ledger = (await client.get("/api/v1/credits/transactions", headers=headers)).json()
    assert [(t["kind"], t["amount"], t["balance_after"]) for t in ledger["items"]] == [
        ("signup_bonus", 100, 100)
    ]


async def test_email_is_case_insensitive_unique(client: AsyncClient) -> None:
    body = _new_user()
    assert (await client.post("/api/v1/auth/register", json=body)).status_code == 201
    again = _new_user(email=body["email"].upper())
    response = await client.post("/api/v1/auth/register", json=again)
    assert response.status_code == 409
    assert_error_shape(response.json(), "email_taken")


async def test_duplicate_username_is_409(client: AsyncClient) -> None:
    body = _new_user()
    assert (await client.post("/api/v1/auth/register", json=body)).status_code == 201
    response = await client.post("/api/v1/auth/register", json=_new_user(username=body["username"]))
    assert response.status_code == 409
    assert_error_shape(response.json(), "username_taken")


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short1!", "at least 8"),
        ("onlyletters", "mix letters"),
        ("12345678901", "mix letters"),
        ("aaaaaaa1", "repetitive"),
        ("é" * 37 + "1", "72 bytes"),
        ("🔥" * 18 + "a1", "72 bytes"),
    ],
)
async def test_weak_or_overlong_password_is_422_with_clear_message(
    client: AsyncClient, password: str, message: str
) -> None:
    response = await client.post("/api/v1/auth/register", json=_new_user(password=password))
    assert response.status_code == 422
    assert_error_shape(response.json(), "validation_error")
    assert message in response.json()["error"]["message"]


async def test_unicode_password_within_72_bytes_works(client: AsyncClient) -> None:
    password = "Pässwörd-🔥-ünïcode"
    body = _new_user(password=password)
    assert (await client.post("/api/v1/auth/register", json=body)).status_code == 201
    assert (await login(client, body["email"], password))["token_type"] == "bearer"


async def test_login_by_username_or_email_gives_access_and_refresh(
    client: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    by_email = await login(client, user.email.upper(), user.password)
    assert by_email["expires_in"] == 1800 and by_email["refresh_token"]
    me = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {by_email['access_token']}"})
    assert me.json()["id"] == user.id


async def test_wrong_password_and_unknown_user_give_the_same_401(
    client: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    wrong = await client.post("/api/v1/auth/token", data={"username": user.username, "password": "Nope-123x"})
    unknown = await client.post("/api/v1/auth/token", data={"username": "ghost-x", "password": "Nope-123x"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]
    assert wrong.headers["WWW-Authenticate"] == "Bearer"


async def test_overlong_password_at_login_is_401_not_500(client: AsyncClient, make_user: UserFactory) -> None:
    user = await make_user()
    response = await client.post(
        "/api/v1/auth/token", data={"username": user.username, "password": "x" * 500}
    )
    assert response.status_code == 401


async def test_failed_logins_are_rate_limited_per_account_with_retry_after(
    client: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    for _ in range(5):
        bad = await client.post(
            "/api/v1/auth/token", data={"username": user.username, "password": "Bad-pass-1"}
        )
        assert bad.status_code == 401
    limited = await client.post(
        "/api/v1/auth/token", data={"username": user.username, "password": user.password}
    )
    assert limited.status_code == 429
    assert_error_shape(limited.json(), "rate_limited")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60


async def test_failed_logins_are_rate_limited_per_ip_across_accounts(client: AsyncClient) -> None:
    statuses = []
    for i in range(32):
        response = await client.post(
            "/api/v1/auth/token", data={"username": f"nobody-{i}", "password": "Bad-pass-1"}
        )
        statuses.append(response.status_code)
    assert statuses[:30] == [401] * 30
    assert statuses[30:] == [429, 429]


async def test_refresh_rotates_and_old_token_stops_working(
    client: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    first = await client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert first.status_code == 200
    rotated = first.json()
    assert rotated["refresh_token"] != user.refresh_token
    me = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {rotated['access_token']}"})
    assert me.status_code == 200
    second = await client.post("/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert second.status_code == 200


async def test_reusing_a_rotated_refresh_token_revokes_the_whole_family(
    client: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    rotated = (await client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})).json()
    reuse = await client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert reuse.status_code == 401
    assert_error_shape(reuse.json(), "refresh_token_reused")
    # the legitimate newest token of that family is dead too
    latest = await client.post("/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert latest.status_code == 401


async def test_logout_revokes_refresh_token(client: AsyncClient, make_user: UserFactory) -> None:
    user = await make_user()
    assert (
        await client.post("/api/v1/auth/logout", json={"refresh_token": user.refresh_token})
    ).status_code == 204
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert response.status_code == 401


async def test_unknown_refresh_token_is_401(client: AsyncClient) -> None:
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": "made-up"})
    assert response.status_code == 401
    assert_error_shape(response.json(), "invalid_refresh_token")


async def test_password_change_revokes_refresh_tokens_and_new_password_works(
    client: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    change = await client.post(
        "/api/v1/users/me/password",
        json={"current_password": user.password, "new_password": "Brand-new-pass-9"},
        headers=user.headers,
    )
    assert change.status_code == 204
    assert (
        await client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    ).status_code == 401
    assert (await login(client, user.username, "Brand-new-pass-9"))["access_token"]


async def test_password_change_needs_current_password(client: AsyncClient, make_user: UserFactory) -> None:
    user = await make_user()
    response = await client.post(
        "/api/v1/users/me/password",
        json={"current_password": "Wrong-pass-1", "new_password": "Brand-new-pass-9"},
        headers=user.headers,
    )
    assert response.status_code == 401


async def test_deactivated_user_cannot_login_or_refresh(client: AsyncClient, make_user: UserFactory) -> None:
    user = await make_user()
    assert (await client.delete("/api/v1/users/me", headers=user.headers)).status_code == 204
    refresh = await client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert refresh.status_code == 401
    response = await client.post(
        "/api/v1/auth/token", data={"username": user.username, "password": user.password}
    )
    assert response.status_code == 403
    assert_error_shape(response.json(), "account_inactive")


@pytest.mark.parametrize("path", ["/api/v1/users/me", "/api/v1/credits", "/api/v1/credits/transactions"])
async def test_a_deactivated_accounts_token_reads_nothing_more(
    client: AsyncClient, make_user: UserFactory, path: str
) -> None:
    user = await make_user()
    assert (await client.get(path, headers=user.headers)).status_code == 200
    assert (await client.delete("/api/v1/users/me", headers=user.headers)).status_code == 204
    response = await client.get(path, headers=user.headers)
    assert response.status_code == 401, response.text
    assert_error_shape(response.json(), "account_inactive")


async def test_service_token_by_client_credentials(client: AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/service-token",
        data={
            "grant_type": "client_credentials",
            "client_id": "message-service",
            "client_secret": "dev-message-service-secret",
            "scope": "credits:write",
        },
    )
    assert response.status_code == 200
    assert response.json()["scope"] == "credits:write"


@pytest.mark.parametrize(
    ("client_id", "scope"),
    [
        (  # every scope of message-service's app/clients/fleet.py SCOPES
            "message-service",
            "credits:write characters:read_private characters:counters conversations:read "
            "conversations:write llm:generate",
        ),
        ("conversation-service", "characters:counters personas:read"),
    ],
)
async def test_dev_service_clients_get_the_scopes_their_calls_need(
    client: AsyncClient, client_id: str, scope: str
) -> None:
    response = await client.post(
        "/api/v1/auth/service-token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": f"dev-{client_id}-secret",
            "scope": scope,
        },
    )
    assert response.status_code == 200, response.text
    assert sorted(response.json()["scope"].split()) == sorted(scope.split())


@pytest.mark.parametrize(
    ("form", "status", "code"),
    [
        ({"client_id": "message-service", "client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_id": "nobody", "client_secret": "dev-message-service-secret"}, 401, "invalid_client"),
        (
            {
                "client_id": "conversation-service",
                "client_secret": "dev-conversation-service-secret",
                "scope": "credits:write",
            },
            403,
            "invalid_scope",
        ),
        (
            {
                "client_id": "message-service",
                "client_secret": "dev-message-service-secret",
                "grant_type": "password",
            },
            400,
            "unsupported_grant_type",
        ),
    ],
)
async def test_bad_client_credentials_are_refused(
    client: AsyncClient, form: dict[str, str], status: int, code: str
) -> None:
    response = await client.post(
        "/api/v1/auth/service-token", data={"grant_type": "client_credentials", **form}
    )
    assert response.status_code == status
    assert_error_shape(response.json(), code)
