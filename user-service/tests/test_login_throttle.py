"""Password guessing is throttled atomically, over real HTTP: parallel guesses cannot pass the count.

Each test gets its own uvicorn server with its own Redis counters, so the per-IP window of
127.0.0.1 is not shared with another test.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
import pytest

from app.config import SERVICE_DIR, Settings
from chat_common.testing import ServiceProcess, serve_service
from tests.conftest import PASSWORD, assert_error_shape

WRONG = "Wrong-pass-123"
NEW_PASSWORD = "Brand-new-pass-9"


@pytest.fixture
async def http(live_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_url, timeout=120) as client:
        yield client


async def register(http: httpx.AsyncClient) -> str:
    name = f"guess{uuid.uuid4().hex[:10]}"
    body = {"email": f"{name}@example.com", "username": name, "display_name": name, "password": PASSWORD}
    response = await http.post("/api/v1/auth/register", json=body)
    assert response.status_code == 201, response.text
    return name


async def attempt(
    http: httpx.AsyncClient, name: str, password: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    form = {"username": name, "password": password}
    return await http.post("/api/v1/auth/token", data=form, headers=headers)


async def test_forty_parallel_wrong_passwords_reach_the_check_only_five_times(
    http: httpx.AsyncClient,
) -> None:
    name = await register(http)
    responses = await asyncio.gather(*[attempt(http, name, WRONG) for _ in range(40)])
    assert Counter(r.status_code for r in responses) == {401: 5, 429: 35}
    right = await attempt(http, name, PASSWORD)
    assert right.status_code == 429
    assert_error_shape(right.json(), "rate_limited")
    assert 1 <= int(right.headers["Retry-After"]) <= 60


async def test_the_email_and_the_username_share_one_account_counter(http: httpx.AsyncClient) -> None:
    name = await register(http)
    by_name = await asyncio.gather(*[attempt(http, name, WRONG) for _ in range(3)])
    by_email = await asyncio.gather(*[attempt(http, f"{name}@EXAMPLE.com", WRONG) for _ in range(3)])
    assert [r.status_code for r in by_name] == [401] * 3
    assert sorted(r.status_code for r in by_email) == [401, 401, 429]


async def test_a_successful_login_clears_the_account_counter(http: httpx.AsyncClient) -> None:
    name = await register(http)
    assert [(await attempt(http, name, WRONG)).status_code for _ in range(4)] == [401] * 4
    assert (await attempt(http, name, PASSWORD)).status_code == 200
    assert [(await attempt(http, name, WRONG)).status_code for _ in range(6)] == [401] * 5 + [429]


async def test_forty_parallel_guesses_from_one_ip_are_cut_at_the_ip_limit(http: httpx.AsyncClient) -> None:
    names = [f"nobody-{uuid.uuid4().hex[:8]}" for _ in range(40)]
    responses = await asyncio.gather(*[attempt(http, name, WRONG) for name in names])
    assert Counter(r.status_code for r in responses) == {401: 30, 429: 10}


async def test_successful_logins_do_not_use_up_the_ip_budget(http: httpx.AsyncClient) -> None:
    name = await register(http)
    statuses = [(await attempt(http, name, PASSWORD)).status_code for _ in range(35)]
    assert statuses == [200] * 35
    assert (await attempt(http, f"ghost-{uuid.uuid4().hex[:8]}", WRONG)).status_code == 401


async def test_parallel_wrong_current_passwords_are_throttled_like_logins(http: httpx.AsyncClient) -> None:
    name = await register(http)
    token = (await attempt(http, name, PASSWORD)).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    body = {"current_password": WRONG, "new_password": NEW_PASSWORD}
    responses = await asyncio.gather(
        *[http.post("/api/v1/users/me/password", json=body, headers=headers) for _ in range(40)]
    )
    assert Counter(r.status_code for r in responses) == {401: 5, 429: 35}
    right = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    refused = await http.post("/api/v1/users/me/password", json=right, headers=headers)
    assert refused.status_code == 429
    assert_error_shape(refused.json(), "rate_limited")
    # the same account counter guards the login
    assert (await attempt(http, name, PASSWORD)).status_code == 429


# --- the client's IP is the connection's, unless a trusted proxy names it -------------------------

RunService = Callable[..., AbstractContextManager[ServiceProcess]]


@pytest.fixture
def run_service(settings: Settings, tmp_path: Path) -> RunService:
    """user-service started as in production: `python run.py`, configured by its environment only."""

    @contextmanager
    def start(**env: str) -> Iterator[ServiceProcess]:
        assert settings.jwt_private_key is not None
        base = {
            "ENVIRONMENT": "test",
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "REDIS_PREFIX": f"test-{uuid.uuid4().hex[:8]}",
            "JWT_PRIVATE_KEY": settings.jwt_private_key.get_secret_value(),
            "DATA_DIR": str(tmp_path),
            "BCRYPT_ROUNDS": "4",
            "JSON_LOGS": "false",
        }
        with serve_service(SERVICE_DIR, {**base, **env}, log_path=tmp_path / "user-service.log") as service:
            yield service

    return start


async def test_x_forwarded_for_from_a_local_client_does_not_escape_the_ip_limit(
    run_service: RunService,
) -> None:
    """Without FORWARDED_ALLOW_IPS no proxy is trusted: every guess counts against 127.0.0.1."""
    with run_service() as service:
        async with httpx.AsyncClient(base_url=service.url, timeout=120) as http:
            statuses = [
                (await attempt(http, f"nobody-{i}", WRONG, {"X-Forwarded-For": f"10.9.9.{i}"})).status_code
                for i in range(31)
            ]
    assert statuses == [401] * 30 + [429]


async def test_behind_a_trusted_proxy_the_forwarded_address_is_the_client(run_service: RunService) -> None:
    with run_service(FORWARDED_ALLOW_IPS="127.0.0.1") as service:
        async with httpx.AsyncClient(base_url=service.url, timeout=120) as http:
            spread = [
                (await attempt(http, f"nobody-{i}", WRONG, {"X-Forwarded-For": f"10.9.9.{i}"})).status_code
                for i in range(31)
            ]
            one_address = [
                (await attempt(http, f"ghost-{i}", WRONG, {"X-Forwarded-For": "10.8.8.8"})).status_code
                for i in range(31)
            ]
    assert spread == [401] * 31
    assert one_address == [401] * 30 + [429]


async def client_credentials(http: httpx.AsyncClient, secret: str) -> httpx.Response:
    form = {
        "grant_type": "client_credentials",
        "client_id": "message-service",
        "client_secret": secret,
        "scope": "credits:write",
    }
    return await http.post("/api/v1/auth/service-token", data=form)


async def test_forty_parallel_wrong_client_secrets_reach_the_check_only_five_times(
    http: httpx.AsyncClient,
) -> None:
    responses = await asyncio.gather(*[client_credentials(http, "dev-guess") for _ in range(40)])
    assert Counter(r.status_code for r in responses) == {401: 5, 429: 35}
    right = await client_credentials(http, "dev-message-service-secret")
    assert right.status_code == 429
    assert_error_shape(right.json(), "rate_limited")


async def test_a_right_client_secret_clears_its_failures(http: httpx.AsyncClient) -> None:
    assert [(await client_credentials(http, "dev-guess")).status_code for _ in range(4)] == [401] * 4
    assert (await client_credentials(http, "dev-message-service-secret")).status_code == 200
    statuses = [(await client_credentials(http, "dev-guess")).status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]
