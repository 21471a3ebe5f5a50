"""Admin user management, profile edits and the first-admin bootstrap (start-up and CLI)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from httpx import AsyncClient

from app.config import Settings
from tests.conftest import UserFactory, assert_error_shape, login

SERVICE_DIR = Path(__file__).resolve().parent.parent


async def test_first_admin_exists_once_and_is_admin(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    me = (await client.get("/api/v1/users/me", headers=admin_headers)).json()
    assert me["role"] == "admin" and me["email"] == "root@example.com"
    found = (await client.get("/api/v1/admin/users?q=root@example", headers=admin_headers)).json()
    assert found["total"] == 1


async def test_admin_searches_and_paginates_users(
    client: AsyncClient, make_user: UserFactory, admin_headers: dict[str, str]
) -> None:
    tag = "zebra"
    for i in range(3):
        await make_user(display_name=f"{tag} {i}")
    page = (await client.get(f"/api/v1/admin/users?q={tag}&limit=2", headers=admin_headers)).json()
    assert page["total"] == 3 and len(page["items"]) == 2 and page["limit"] == 2 and page["offset"] == 0
    rest = (await client.get(f"/api/v1/admin/users?q={tag}&limit=2&offset=2", headers=admin_headers)).json()
    assert len(rest["items"]) == 1


async def test_admin_changes_role_and_deactivates(
    client: AsyncClient, make_user: UserFactory, admin_headers: dict[str, str]
) -> None:
    user = await make_user()
    promoted = await client.patch(
        f"/api/v1/admin/users/{user.id}", json={"role": "admin"}, headers=admin_headers
    )
    assert promoted.json()["role"] == "admin"
    off = await client.patch(
        f"/api/v1/admin/users/{user.id}", json={"is_active": False}, headers=admin_headers
    )
    assert off.json()["is_active"] is False
    assert (
        await client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    ).status_code == 401
    on = await client.patch(f"/api/v1/admin/users/{user.id}", json={"is_active": True}, headers=admin_headers)
    assert on.json()["is_active"] is True
    assert (await login(client, user.username, user.password))["access_token"]


async def test_admin_update_rejects_unknown_role(
    client: AsyncClient, make_user: UserFactory, admin_headers: dict[str, str]
) -> None:
    user = await make_user()
    response = await client.patch(
        f"/api/v1/admin/users/{user.id}", json={"role": "god"}, headers=admin_headers
    )
    assert response.status_code == 422


async def test_user_updates_own_profile_and_conflicts_are_409(
    client: AsyncClient, make_user: UserFactory
) -> None:
    alice, bob = await make_user(), await make_user()
    renamed = await client.patch("/api/v1/users/me", json={"display_name": "Alice 🌸"}, headers=alice.headers)
    assert renamed.status_code == 200 and renamed.json()["display_name"] == "Alice 🌸"
    clash = await client.patch("/api/v1/users/me", json={"email": bob.email}, headers=alice.headers)
    assert clash.status_code == 409
    assert_error_shape(clash.json(), "email_taken")
    role = await client.patch("/api/v1/users/me", json={"role": "admin"}, headers=alice.headers)
    assert role.status_code == 422


def test_cli_create_admin_is_idempotent(settings: Settings) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": settings.database_url,
        "BCRYPT_ROUNDS": "4",
        "ENVIRONMENT": "test",
    }
    command = [
        sys.executable,
        "-m",
        "app.cli",
        "create-admin",
        "--email",
        "ops@example.com",
        "--username",
        "ops",
        "--password",
        "Night-shift-2024",
    ]
    first = subprocess.run(command, cwd=SERVICE_DIR, env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "created admin ops@example.com" in first.stdout
    second = subprocess.run(command, cwd=SERVICE_DIR, env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert "ops@example.com is already an admin" in second.stdout
