"""PostgreSQL or Redis killed (SIGKILL) under a running user-service and started again on the same port
and data: a 503 naming it while it is away, not ready, alive, and the service answering again by
itself within seconds of its return, with everything stored before still there."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Iterator

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response

from app.config import Settings
from app.main import create_app
from chat_common.testing import create_database
from chat_common.testing.outages import RestartableServer, restartable_server, seconds_until
from tests.conftest import PASSWORD, assert_error_shape, service_token

RECOVERY_SECONDS = 10  # a generous bound on a loaded machine; measured well under a second


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartableServer]:
    with restartable_server("postgres", tmp_path_factory.mktemp("restartable-postgres")) as server:
        yield server


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartableServer]:
    with restartable_server("redis", tmp_path_factory.mktemp("restartable-redis")) as server:
        yield server


@pytest.fixture(scope="module")
async def outage_client(
    settings: Settings, postgres: RestartableServer, redis: RestartableServer
) -> AsyncIterator[AsyncClient]:
    """A client of a user-service of its own on the restartable servers (its reservation sweeper every
    half second); one IP (logins are counted)."""
    database_url = await create_database(postgres.url, "users")
    update = {"database_url": database_url, "redis_url": redis.url, "reservation_sweep_seconds": 0.5}
    app: FastAPI = create_app(settings.model_copy(update=update))
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, client=("10.9.9.9", 40000))
        async with AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def _register(client: AsyncClient, name: str) -> dict[str, str]:
    body = {"email": f"{name}@example.com", "username": name, "display_name": name, "password": PASSWORD}
    created = await client.post("/api/v1/auth/register", json=body)
    assert created.status_code == 201, created.text
    token = await client.post("/api/v1/auth/token", data={"username": name, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def _names(response: Response, service: str) -> None:
    assert response.status_code == 503, response.text
    assert_error_shape(response.json(), "dependency_unavailable")
    assert response.json()["error"]["details"] == {"service": service}


async def test_postgres_killed_is_a_503_naming_it_and_the_service_recovers_when_it_restarts(
    outage_client: AsyncClient, postgres: RestartableServer
) -> None:
    client = outage_client
    user = await _register(client, "pgkilled")
    services = await service_token(client)
    user_id = (await client.get("/api/v1/users/me", headers=user)).json()["id"]
    held = await client.post(
        "/api/v1/credits/reservations",
        json={"user_id": user_id, "amount": 7, "idempotency_key": "before-the-kill"},
        headers=services,
    )
    assert held.status_code == 201, held.text

    postgres.kill()
    started = time.monotonic()
    read = await client.get("/api/v1/users/me", headers=user)
    write = await client.post(
        "/api/v1/credits/reservations",
        json={"user_id": user_id, "amount": 1, "idempotency_key": "during-the-outage"},
        headers=services,
    )
    waited = time.monotonic() - started
    ready, health = await client.get("/ready"), await client.get("/health")

    _names(read, "postgres")
    _names(write, "postgres")
    assert "127.0.0.1" not in read.text + write.text  # the driver's text stays in the log
    assert waited < 10  # refused at once, never a hang
    assert ready.status_code == 503 and ready.json()["checks"]["postgres"] == "error"
    assert health.status_code == 200

    postgres.start()
    recovery = await seconds_until(
        lambda: _ok(client.get("/api/v1/users/me", headers=user)), within=RECOVERY_SECONDS
    )
    print(f"user-service recovered {recovery:.2f}s after PostgreSQL restarted")

    balance = await client.get("/api/v1/credits", headers=user)
    reservation = await client.get(f"/api/v1/credits/reservations/{held.json()['id']}", headers=services)
    assert balance.json()["balance"] == 93  # the reservation made before the kill is kept
    assert reservation.json()["status"] == "held"
    assert (await client.get("/ready")).status_code == 200


async def test_the_first_request_after_a_postgres_restart_succeeds(
    outage_client: AsyncClient, postgres: RestartableServer
) -> None:
    """Restarted while no request came: the pooled connections to the old server are replaced before
    use, not handed to the next request to fail on."""
    client = outage_client
    user = await _register(client, "pgquick")
    assert (await client.get("/api/v1/users/me", headers=user)).status_code == 200

    postgres.kill()
    postgres.start()
    first = await client.get("/api/v1/users/me", headers=user)

    assert first.status_code == 200, first.text


async def test_the_reservation_sweeper_survives_a_postgres_outage_and_expires_what_came_due(
    outage_client: AsyncClient, postgres: RestartableServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A reservation comes due while PostgreSQL is away: the sweeper's rounds fail meanwhile, each
    logged in one line naming PostgreSQL (no traceback a round), and the first round after PostgreSQL
    is back gives its credits back."""
    client = outage_client
    user = await _register(client, "pgsweep")
    services = await service_token(client)
    user_id = (await client.get("/api/v1/users/me", headers=user)).json()["id"]
    body = {"user_id": user_id, "amount": 9, "idempotency_key": "sweep", "ttl_seconds": 1}
    held = await client.post("/api/v1/credits/reservations", json=body, headers=services)
    assert held.status_code == 201, held.text

    with caplog.at_level(logging.WARNING, logger="app.main"):
        postgres.kill()
        await asyncio.sleep(2.5)  # due, and several sweeps fail
        postgres.start()
    rounds = [r for r in caplog.records if r.name == "app.main" and "sweep" in r.getMessage()]

    async def expired() -> bool:
        found = await client.get(f"/api/v1/credits/reservations/{held.json()['id']}", headers=services)
        return found.status_code == 200 and found.json()["status"] == "expired"

    seconds = await seconds_until(expired, within=RECOVERY_SECONDS)
    print(f"user-service's reservation sweeper resumed {seconds:.2f}s after PostgreSQL restarted")
    assert (await client.get("/api/v1/credits", headers=user)).json()["balance"] == 100
    assert rounds and all("PostgreSQL is away" in r.getMessage() for r in rounds)
    assert not any(r.exc_info for r in rounds)


async def test_redis_killed_is_a_503_naming_it_at_login_and_logins_work_again_when_it_restarts(
    outage_client: AsyncClient, redis: RestartableServer
) -> None:
    client = outage_client
    user = await _register(client, "rediskilled")
    form = {"username": "rediskilled", "password": PASSWORD}

    redis.kill()
    started = time.monotonic()
    login = await client.post("/api/v1/auth/token", data=form)
    waited = time.monotonic() - started
    me = await client.get("/api/v1/users/me", headers=user)
    ready, health = await client.get("/ready"), await client.get("/health")

    _names(login, "redis")
    assert waited < 10
    assert me.status_code == 200  # what does not need Redis still works
    assert ready.status_code == 503 and ready.json()["checks"] == {"redis": "error", "postgres": "ok"}
    assert health.status_code == 200

    redis.start()
    recovery = await seconds_until(
        lambda: _ok(client.post("/api/v1/auth/token", data=form)), within=RECOVERY_SECONDS
    )
    print(f"user-service logins recovered {recovery:.2f}s after Redis restarted")
    assert (await client.get("/ready")).status_code == 200


async def _ok(request: Awaitable[Response]) -> bool:
    return (await request).status_code == 200


async def test_the_first_login_after_a_redis_restart_succeeds(
    outage_client: AsyncClient, redis: RestartableServer
) -> None:
    """Restarted while no login came: the pooled connection to the old server fails at once and the
    command is sent again on a new one, not answered with a 503."""
    client = outage_client
    await _register(client, "redisquick")  # its login leaves a pooled connection to the old server
    form = {"username": "redisquick", "password": PASSWORD}

    redis.kill()
    redis.start()
    first = await client.post("/api/v1/auth/token", data=form)

    assert first.status_code == 200, first.text
