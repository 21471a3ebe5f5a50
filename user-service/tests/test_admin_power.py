"""Admin power comes from the account as it is now, not from the token; an active admin always remains.

Each test runs on a database of its own, so it knows every admin in it (the start-up admin `root`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from tests.conftest import PASSWORD, assert_error_shape

AppStarter = Callable[..., AbstractAsyncContextManager[FastAPI]]
Headers = dict[str, str]


@pytest.fixture
async def http(start_app: AppStarter, fresh_database_url: str) -> AsyncIterator[AsyncClient]:
    async with start_app(database_url=fresh_database_url) as app:
        transport = ASGITransport(app=app, client=("10.8.8.8", 1))
        async with AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


async def login(http: AsyncClient, name: str, password: str = PASSWORD) -> Headers:
    response = await http.post("/api/v1/auth/token", data={"username": name, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def new_user(http: AsyncClient) -> tuple[str, Headers]:
    name = f"u{uuid.uuid4().hex[:10]}"
    body = {"email": f"{name}@example.com", "username": name, "display_name": name, "password": PASSWORD}
    response = await http.post("/api/v1/auth/register", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"], await login(http, name)


async def root_headers(http: AsyncClient) -> Headers:
    return await login(http, "root@example.com", "Admin-pass-2024")


async def new_admin(http: AsyncClient, root: Headers) -> tuple[str, Headers]:
    """A second admin, holding a token that says so."""
    user_id, _ = await new_user(http)
    promoted = await http.patch(f"/api/v1/admin/users/{user_id}", json={"role": "admin"}, headers=root)
    assert promoted.status_code == 200, promoted.text
    name = promoted.json()["username"]
    return user_id, await login(http, name)


async def active_admins(http: AsyncClient, root: Headers) -> int:
    page = await http.get("/api/v1/admin/users?role=admin&is_active=true", headers=root)
    assert page.status_code == 200, page.text
    return int(page.json()["total"])


async def admin_calls(http: AsyncClient, headers: Headers, other_id: str) -> list[int]:
    calls = [
        http.get("/api/v1/admin/users", headers=headers),
        http.get(f"/api/v1/admin/users/{other_id}", headers=headers),
        http.patch(f"/api/v1/admin/users/{other_id}", json={"role": "admin"}, headers=headers),
        http.post(
            f"/api/v1/admin/users/{other_id}/credits", json={"amount": 5, "reason": "x"}, headers=headers
        ),
        http.get(f"/api/v1/users/{other_id}", headers=headers),
    ]
    return [(await call).status_code for call in calls]


async def test_a_demoted_admin_token_no_longer_opens_admin_routes(http: AsyncClient) -> None:
    root = await root_headers(http)
    admin_id, admin = await new_admin(http, root)
    other_id, _ = await new_user(http)
    demoted = await http.patch(f"/api/v1/admin/users/{admin_id}", json={"role": "user"}, headers=root)
    assert demoted.status_code == 200
    assert await admin_calls(http, admin, other_id) == [403, 403, 403, 403, 404]
    response = await http.get("/api/v1/admin/users", headers=admin)
    assert_error_shape(response.json(), "forbidden")


async def test_a_deactivated_admin_token_no_longer_opens_admin_routes(http: AsyncClient) -> None:
    root = await root_headers(http)
    admin_id, admin = await new_admin(http, root)
    other_id, _ = await new_user(http)
    off = await http.patch(f"/api/v1/admin/users/{admin_id}", json={"is_active": False}, headers=root)
    assert off.status_code == 200
    assert await admin_calls(http, admin, other_id) == [401, 401, 401, 401, 401]
    response = await http.get("/api/v1/admin/users", headers=admin)
    assert_error_shape(response.json(), "account_inactive")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", "/api/v1/admin/users/{root_id}", {"role": "user"}),
        ("PATCH", "/api/v1/admin/users/{root_id}", {"is_active": False}),
        ("PATCH", "/api/v1/admin/users/{root_id}", {"role": "user", "is_active": False}),
        ("DELETE", "/api/v1/users/me", None),
    ],
)
async def test_the_last_active_admin_cannot_be_demoted_or_deactivated(
    http: AsyncClient, method: str, path: str, body: dict[str, object] | None
) -> None:
    root = await root_headers(http)
    root_id = (await http.get("/api/v1/users/me", headers=root)).json()["id"]
    response = await http.request(method, path.format(root_id=root_id), json=body, headers=root)
    assert response.status_code == 409
    assert_error_shape(response.json(), "last_admin")
    me = (await http.get("/api/v1/users/me", headers=root)).json()
    assert (me["role"], me["is_active"]) == ("admin", True)


async def test_an_admin_may_step_down_while_another_active_admin_remains(http: AsyncClient) -> None:
    root = await root_headers(http)
    admin_id, admin = await new_admin(http, root)
    stepped_down = await http.patch(f"/api/v1/admin/users/{admin_id}", json={"role": "user"}, headers=admin)
    assert stepped_down.status_code == 200 and stepped_down.json()["role"] == "user"
    assert await active_admins(http, root) == 1


async def test_an_inactive_admin_does_not_count_as_the_remaining_admin(http: AsyncClient) -> None:
    root = await root_headers(http)
    admin_id, _ = await new_admin(http, root)
    off = await http.patch(f"/api/v1/admin/users/{admin_id}", json={"is_active": False}, headers=root)
    assert off.status_code == 200
    root_id = (await http.get("/api/v1/users/me", headers=root)).json()["id"]
    response = await http.patch(f"/api/v1/admin/users/{root_id}", json={"role": "user"}, headers=root)
    assert response.status_code == 409


async def test_two_admins_demoting_each_other_at_once_leave_one_admin(http: AsyncClient) -> None:
    root = await root_headers(http)
    root_id = (await http.get("/api/v1/users/me", headers=root)).json()["id"]
    for _ in range(5):
        other_id, other = await new_admin(http, root)
        statuses = await asyncio.gather(
            http.patch(f"/api/v1/admin/users/{other_id}", json={"role": "user"}, headers=root),
            http.patch(f"/api/v1/admin/users/{root_id}", json={"role": "user"}, headers=other),
        )
        assert sorted(r.status_code for r in statuses) == [200, 403]
        survivor = root if statuses[0].status_code == 200 else other
        assert await active_admins(http, survivor) == 1
        if survivor is other:  # give root its role back for the next round
            back = await http.patch(f"/api/v1/admin/users/{root_id}", json={"role": "admin"}, headers=other)
            assert back.status_code == 200
            root = await root_headers(http)
            demote = await http.patch(f"/api/v1/admin/users/{other_id}", json={"role": "user"}, headers=root)
            assert demote.status_code == 200
