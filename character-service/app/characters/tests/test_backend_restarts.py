"""PostgreSQL killed (SIGKILL) under a running character-service and started again on the same port and
data: a 503 naming it while it is away, not ready, alive, and the service answering again by itself
within seconds of its return, with every character stored before still there."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest
from httpx import ASGITransport, AsyncClient

from app.characters.tests.conftest import Caller, error_code
from app.config import Settings
from app.main import create_app
from chat_common.testing import create_database
from chat_common.testing.outages import RestartableServer, restartable_server, seconds_until

RECOVERY_SECONDS = 10  # a generous bound on a loaded machine; measured well under a second


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartableServer]:
    with restartable_server("postgres", tmp_path_factory.mktemp("restartable-postgres")) as server:
        yield server


@pytest.fixture(scope="module")
async def outage_client(settings: Settings, postgres: RestartableServer) -> AsyncIterator[AsyncClient]:
    """A client of a character-service of its own on the restartable PostgreSQL."""
    database_url = await create_database(postgres.url, "characters")
    app = create_app(settings.model_copy(update={"database_url": database_url}))
    transport = ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=transport, base_url="http://testserver") as http,
    ):
        yield http


async def _create(client: AsyncClient, owner: Caller, name: str) -> dict[str, object]:
    response = await client.post(
        "/api/v1/characters", json={"name": name, "description": "Kept"}, headers=owner.headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_postgres_killed_is_a_503_naming_it_and_the_service_recovers_when_it_restarts(
    outage_client: AsyncClient, postgres: RestartableServer, alice: Caller
) -> None:
    client = outage_client
    kept = await _create(client, alice, "Before the kill")

    postgres.kill()
    started = time.monotonic()
    read = await client.get(f"/api/v1/characters/{kept['id']}", headers=alice.headers)
    write = await client.post(
        "/api/v1/characters", json={"name": "During", "description": "x"}, headers=alice.headers
    )
    waited = time.monotonic() - started
    ready, health = await client.get("/ready"), await client.get("/health")

    for response in (read, write):
        assert response.status_code == 503 and error_code(response) == "dependency_unavailable"
        assert response.json()["error"]["details"] == {"service": "postgres"}
        assert "127.0.0.1" not in response.text
    assert waited < 10  # refused at once, never a hang
    assert ready.status_code == 503 and ready.json()["checks"] == {"postgres": "error"}
    assert health.status_code == 200

    postgres.start()

    async def answers() -> bool:
        response = await client.get(f"/api/v1/characters/{kept['id']}", headers=alice.headers)
        return response.status_code == 200

    recovery = await seconds_until(answers, within=RECOVERY_SECONDS)
    print(f"character-service recovered {recovery:.2f}s after PostgreSQL restarted")
    listed = await client.get("/api/v1/characters", params={"mine": "true"}, headers=alice.headers)
    assert [c["name"] for c in listed.json()["items"]] == ["Before the kill"]  # nothing lost, none made
    assert (await client.get("/ready")).status_code == 200


async def test_the_first_write_after_a_postgres_restart_succeeds(
    outage_client: AsyncClient, postgres: RestartableServer, bob: Caller
) -> None:
    """Restarted while no request came: pooled connections to the old server are replaced before use."""
    client = outage_client
    await _create(client, bob, "First")

    postgres.kill()
    postgres.start()
    second = await client.post(
        "/api/v1/characters", json={"name": "Second", "description": "x"}, headers=bob.headers
    )

    assert second.status_code == 201, second.text
