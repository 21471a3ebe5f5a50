"""MongoDB lost while the service runs: a prompt 503 naming it, not ready, and recovery when it returns."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx

from app.main import create_app
from chat_common.embedded import free_port, start_mongodb
from chat_common.testing import ServiceProcess, serve_app
from chat_common.testing.fleet import FleetUser
from tests.conftest import fleet_settings


async def test_a_killed_mongodb_is_a_503_naming_it_and_the_service_recovers_when_it_returns(
    tmp_path: Path,
    user_service: ServiceProcess,
    character_service: ServiceProcess,
    alice: FleetUser,
    make_character,
) -> None:
    port = free_port()
    server = start_mongodb(tmp_path / "mongodb", port)
    character = await make_character(alice)
    settings = fleet_settings(server.url, user_service, character_service, mongodb_database="outage")
    try:
        with serve_app(create_app(settings)) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30, headers=alice.headers) as service:
                created = await service.post("/api/v1/conversations", json={"character_id": character["id"]})
                server.stop_signal = signal.SIGKILL
                server.stop()

                started = time.monotonic()
                down = await service.get("/api/v1/conversations")
                waited = time.monotonic() - started
                not_ready = await service.get("/ready")
                alive = await service.get("/health")

                server = start_mongodb(tmp_path / "mongodb", port)  # same files, same port
                restarted = time.monotonic()
                back = await service.get("/api/v1/conversations")
                recovery = time.monotonic() - restarted
                ready = await service.get("/ready")
                another = await service.post("/api/v1/conversations", json={"character_id": character["id"]})
    finally:
        server.stop()

    assert created.status_code == 201
    assert down.status_code == 503
    assert down.json()["error"]["code"] == "dependency_unavailable"
    assert down.json()["error"]["details"] == {"service": "mongodb"}
    assert "127.0.0.1" not in down.text  # the driver's text stays in the log
    assert waited < 10  # MONGODB_TIMEOUT_SECONDS (2 s here), not the driver's 30 s default
    assert not_ready.status_code == 503 and not_ready.json()["checks"]["mongodb"] == "error"
    assert alive.status_code == 200
    assert back.status_code == 200 and [c["id"] for c in back.json()["items"]] == [created.json()["id"]]
    print(f"conversation-service answered {recovery:.2f}s after MongoDB restarted")
    assert ready.status_code == 200
    assert another.status_code == 201, another.text
