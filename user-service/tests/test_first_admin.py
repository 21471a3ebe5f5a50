"""The first-admin bootstrap creates the configured admin; it never promotes someone else's account."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from pydantic import SecretStr

from app.config import ServiceClientConfig, Settings
from app.main import create_app
from tests.conftest import PASSWORD

SERVICE_DIR = Path(__file__).resolve().parent.parent
AppStarter = Callable[..., AbstractAsyncContextManager[FastAPI]]
SQUATTER = {"email": "boss@example.com", "username": "squatter", "display_name": "S", "password": PASSWORD}
ADMIN_PASSWORD = "Admin-pass-2024"
FRESH_PASSWORD = "Night-shift-2024"  # ADMIN_PASSWORD contains the username `admin`, which is refused


def client_of(app: FastAPI) -> AsyncClient:
    return AsyncClient(transport=ASGITransport(app=app, client=("10.9.9.9", 1)), base_url="http://t")


async def role_after_login(app: FastAPI, login: str, password: str) -> str | int:
    """The account's role from /users/me, or the login's status code when the login is refused."""
    async with client_of(app) as http:
        token = await http.post("/api/v1/auth/token", data={"username": login, "password": password})
        if token.status_code != 200:
            return token.status_code
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        return str((await http.get("/api/v1/users/me", headers=headers)).json()["role"])


def production_settings(settings: Settings, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "environment": "production",
        "database_url": database_url,
        "redis_url": settings.redis_url,
        "jwt_private_key": settings.jwt_private_key,
        "data_dir": settings.data_dir,
        "cors_origins": ["https://chat.example"],
        "service_clients": {
            "message-service": ServiceClientConfig(secret=SecretStr("s3cr3t-long"), scopes=[])
        },
        "first_admin_password": SecretStr(FRESH_PASSWORD),
    }
    return Settings(**{**values, **overrides})  # type: ignore[arg-type]


async def register_squatter(start_app: AppStarter, database_url: str) -> None:
    async with start_app(database_url=database_url, first_admin_email=None) as app, client_of(app) as http:
        assert (await http.post("/api/v1/auth/register", json=SQUATTER)).status_code == 201


async def test_start_up_creates_the_admin_when_no_account_has_the_email(
    start_app: AppStarter, fresh_database_url: str
) -> None:
    async with start_app(database_url=fresh_database_url, first_admin_email="boss@example.com") as app:
        assert await role_after_login(app, "boss@example.com", ADMIN_PASSWORD) == "admin"
    # a restart finds its admin and changes nothing
    async with start_app(database_url=fresh_database_url, first_admin_email="boss@example.com") as app:
        assert await role_after_login(app, "boss@example.com", ADMIN_PASSWORD) == "admin"


async def test_start_up_does_not_promote_an_account_that_registered_the_admin_email(
    start_app: AppStarter, fresh_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await register_squatter(start_app, fresh_database_url)
    # create_app configures the root logger afresh, which drops caplog's handler there
    main_logger = logging.getLogger("app.main")
    main_logger.addHandler(caplog.handler)
    try:
        async with start_app(database_url=fresh_database_url, first_admin_email="boss@example.com") as app:
            assert await role_after_login(app, "boss@example.com", PASSWORD) == "user"
            assert await role_after_login(app, "boss@example.com", ADMIN_PASSWORD) == 401
    finally:
        main_logger.removeHandler(caplog.handler)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("boss@example.com" in m and "not promoted" in m for m in errors), errors


async def test_production_refuses_to_start_when_a_non_admin_holds_the_admin_email(
    start_app: AppStarter, fresh_database_url: str, settings: Settings
) -> None:
    await register_squatter(start_app, fresh_database_url)
    production = production_settings(
        settings,
        fresh_database_url,
        first_admin_email="boss@example.com",
        first_admin_username="root",
        first_admin_password=SecretStr(ADMIN_PASSWORD),
    )
    app = create_app(production)
    with pytest.raises(RuntimeError, match="boss@example.com"):
        async with app.router.lifespan_context(app):
            pass
    async with start_app(database_url=fresh_database_url, first_admin_email=None) as app:
        assert await role_after_login(app, "boss@example.com", PASSWORD) == "user"


async def register_admin_username_holder(start_app: AppStarter, database_url: str) -> None:
    """Someone registers the username `admin` (FIRST_ADMIN_USERNAME's default) with an email of their own."""
    holder = {"email": "holder@example.com", "username": "admin", "display_name": "H", "password": PASSWORD}
    async with start_app(database_url=database_url, first_admin_email=None) as app, client_of(app) as http:
        assert (await http.post("/api/v1/auth/register", json=holder)).status_code == 201


async def test_start_up_survives_a_taken_admin_username_and_says_so(
    start_app: AppStarter, fresh_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await register_admin_username_holder(start_app, fresh_database_url)
    main_logger = logging.getLogger("app.main")
    main_logger.addHandler(caplog.handler)
    try:
        async with start_app(
            database_url=fresh_database_url,
            first_admin_email="fresh-admin@corp.com",
            first_admin_username="admin",
            first_admin_password=SecretStr(FRESH_PASSWORD),
        ) as app:
            # started; the admin was not created and the holder of the username is untouched
            assert await role_after_login(app, "fresh-admin@corp.com", FRESH_PASSWORD) == 401
            assert await role_after_login(app, "holder@example.com", PASSWORD) == "user"
    finally:
        main_logger.removeHandler(caplog.handler)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        "FIRST_ADMIN_USERNAME 'admin' is taken by another account, so the first admin fresh-admin@corp.com "
        "was not created. Set FIRST_ADMIN_USERNAME to a free username, or create the admin with: "
        "python -m app.cli create-admin --email fresh-admin@corp.com --username <a free username>"
    ]


async def test_production_refuses_to_start_with_a_clear_message_when_the_admin_username_is_taken(
    start_app: AppStarter, fresh_database_url: str, settings: Settings
) -> None:
    await register_admin_username_holder(start_app, fresh_database_url)
    app = create_app(
        production_settings(settings, fresh_database_url, first_admin_email="fresh-admin@corp.com")
    )
    with pytest.raises(RuntimeError) as refused:
        async with app.router.lifespan_context(app):
            pass
    assert str(refused.value).startswith("FIRST_ADMIN_USERNAME 'admin' is taken by another account")
    async with start_app(database_url=fresh_database_url, first_admin_email=None) as app:
        assert await role_after_login(app, "fresh-admin@corp.com", FRESH_PASSWORD) == 401


def run_cli(
    settings: Settings, database_url: str, email: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": database_url, "BCRYPT_ROUNDS": "4", "ENVIRONMENT": "test"}
    command = [
        sys.executable,
        "-m",
        "app.cli",
        "create-admin",
        "--email",
        email,
        "--password",
        "Night-shift-2024",
        *extra,
    ]
    return subprocess.run(command, cwd=SERVICE_DIR, env=env, capture_output=True, text=True, timeout=120)


async def test_the_cli_promotes_an_existing_account_on_purpose(
    start_app: AppStarter, fresh_database_url: str, settings: Settings
) -> None:
    await register_squatter(start_app, fresh_database_url)
    promoted = run_cli(settings, fresh_database_url, "boss@example.com")
    assert promoted.returncode == 0, promoted.stderr
    assert "promoted existing account boss@example.com" in promoted.stdout
    again = run_cli(settings, fresh_database_url, "boss@example.com")
    assert "boss@example.com is already an admin" in again.stdout
    async with start_app(database_url=fresh_database_url, first_admin_email=None) as app:
        # promoted with the password its owner chose; the CLI's password is not applied
        assert await role_after_login(app, "boss@example.com", PASSWORD) == "admin"


async def test_an_invalid_first_admin_password_stops_start_up_without_printing_it(
    start_app: AppStarter, fresh_database_url: str
) -> None:
    weak = "root-pass-2024"  # contains the username
    with pytest.raises(RuntimeError, match="FIRST_ADMIN") as refused:
        async with start_app(database_url=fresh_database_url, first_admin_password=SecretStr(weak)):
            pass
    assert "must not contain the username" in str(refused.value)
    assert weak not in str(refused.value)
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


async def test_the_cli_names_a_taken_username_instead_of_a_traceback(
    start_app: AppStarter, fresh_database_url: str, settings: Settings
) -> None:
    await register_admin_username_holder(start_app, fresh_database_url)
    refused = run_cli(settings, fresh_database_url, "fresh-admin@corp.com")  # --username defaults to admin
    assert refused.returncode == 1
    assert (
        refused.stderr == "cannot create the admin: This username is taken; choose another with --username\n"
    )
    created = run_cli(settings, fresh_database_url, "fresh-admin@corp.com", "--username", "chief")
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("created admin fresh-admin@corp.com (")
