"""Downstream trouble: character-service or user-service down, and the character counter retried."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from app.main import create_app
from chat_common.embedded import free_port
from chat_common.testing import ServiceProcess, serve_app
from chat_common.testing.fleet import FleetUser
from tests.conftest import fleet_settings

FORWARDED_HEADERS = ("authorization", "content-type", "x-request-id")


class CounterTrouble:
    """Stands on the network between conversation-service and the real character-service: passes every
    call on, except that counter changes can be refused (`refuse`) or carried out with the answer lost
    on the way back (`lose_answer`), as a dropped connection would."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.mode = "pass"
        self.counter_calls = 0
        self.counter_paths: list[str] = []

    def app(self) -> FastAPI:
        proxy = FastAPI()

        @proxy.api_route("/{path:path}", methods=["GET", "POST", "PATCH"])
        async def forward(path: str, request: Request) -> Response:
            is_counter = path.endswith("/counters")
            if is_counter:
                self.counter_calls += 1
                self.counter_paths.append(path)
                if self.mode == "refuse":
                    return Response(status_code=503)
            headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED_HEADERS}
            async with httpx.AsyncClient(base_url=self.target) as http:
                answer = await http.request(
                    request.method, f"/{path}", headers=headers, content=await request.body()
                )
            if is_counter and self.mode == "lose_answer":
                return Response(status_code=502)
            media_type = answer.headers.get("content-type")
            return Response(answer.content, status_code=answer.status_code, media_type=media_type)

        return proxy


@pytest.fixture(scope="module")
def trouble(character_service: ServiceProcess) -> Iterator[tuple[CounterTrouble, str]]:
    proxy = CounterTrouble(character_service.url)
    with serve_app(proxy.app()) as url:
        yield proxy, url


@pytest.fixture(scope="module")
def troubled_app(
    mongodb_url: str,
    user_service: ServiceProcess,
    character_service: ServiceProcess,
    trouble: tuple[CounterTrouble, str],
) -> Iterator[tuple[FastAPI, str]]:
    """conversation-service reaching character-service through `trouble`, retrying every 0.3 s."""
    settings = fleet_settings(
        mongodb_url, user_service, character_service, counter_retry_interval_seconds=0.3
    )
    settings.character_service_url = trouble[1]
    app = create_app(settings)
    with serve_app(app) as url:
        yield app, url


def _service_with(
    mongodb_url: str, user_service: ServiceProcess, character_service: ServiceProcess, **urls: str
) -> FastAPI:
    settings = fleet_settings(mongodb_url, user_service, character_service)
    for name, url in urls.items():
        setattr(settings, name, url)
    return create_app(settings)


async def _conversation_count(characters: httpx.AsyncClient, owner: FleetUser, character_id: str) -> int:
    response = await characters.get(f"/api/v1/characters/{character_id}", headers=owner.headers)
    return int(response.json()["conversation_count"])


async def _until(condition: Any) -> None:
    """Wait (at most 10 s) until `condition()` is true."""
    for _ in range(100):
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met within 10 s")


async def test_a_conversation_starts_while_the_counter_fails_and_is_counted_once_it_recovers(
    troubled_app: tuple[FastAPI, str],
    trouble: tuple[CounterTrouble, str],
    characters: httpx.AsyncClient,
    alice: FleetUser,
    make_character,
) -> None:
    proxy, _ = trouble
    _, url = troubled_app
    character = await make_character(alice)
    proxy.mode, proxy.counter_calls = "refuse", 0

    async with httpx.AsyncClient(base_url=url, timeout=30) as service:
        created = await service.post(
            "/api/v1/conversations", json={"character_id": character["id"]}, headers=alice.headers
        )
        await _until(lambda: _calls_at_least(proxy, 2))  # the first try and a retry, both refused
        metrics = (await service.get("/metrics")).text
        uncounted = await _conversation_count(characters, alice, character["id"])
        proxy.mode = "pass"
        await _until(lambda: _count_is(characters, alice, character["id"], 1))
        calls_when_counted = proxy.counter_calls
        await asyncio.sleep(1.0)  # three more retry intervals

    assert created.status_code == 201
    assert uncounted == 0
    assert _metric(metrics, "character_counter_failures_total") >= 2
    assert await _conversation_count(characters, alice, character["id"]) == 1
    assert proxy.counter_calls == calls_when_counted  # acknowledged: no longer retried


async def test_a_lost_acknowledgement_is_retried_without_counting_twice(
    troubled_app: tuple[FastAPI, str],
    trouble: tuple[CounterTrouble, str],
    characters: httpx.AsyncClient,
    alice: FleetUser,
    make_character,
) -> None:
    proxy, _ = trouble
    _, url = troubled_app
    character = await make_character(alice)
    proxy.mode, proxy.counter_calls = "lose_answer", 0

    async with httpx.AsyncClient(base_url=url, timeout=30) as service:
        created = await service.post(
            "/api/v1/conversations", json={"character_id": character["id"]}, headers=alice.headers
        )
        await _until(lambda: _calls_at_least(proxy, 3))  # carried out three times, never acknowledged
        proxy.mode = "pass"
        await asyncio.sleep(1.0)

    assert created.status_code == 201
    assert await _conversation_count(characters, alice, character["id"]) == 1


async def test_a_counter_for_a_deleted_character_is_given_up_not_retried_forever(
    troubled_app: tuple[FastAPI, str],
    trouble: tuple[CounterTrouble, str],
    characters: httpx.AsyncClient,
    alice: FleetUser,
    make_character,
) -> None:
    proxy, _ = trouble
    _, url = troubled_app
    character = await make_character(alice)
    proxy.mode = "refuse"

    async with httpx.AsyncClient(base_url=url, timeout=30) as service:
        created = await service.post(
            "/api/v1/conversations", json={"character_id": character["id"]}, headers=alice.headers
        )
        deleted = await characters.delete(f"/api/v1/characters/{character['id']}", headers=alice.headers)
        proxy.mode = "pass"  # character-service answers again: 404, the character is gone
        await asyncio.sleep(1.0)
        calls = sum(character["id"] in path for path in proxy.counter_paths)
        await asyncio.sleep(1.0)  # three more retry intervals

    assert created.status_code == 201 and deleted.status_code == 204
    assert sum(character["id"] in path for path in proxy.counter_paths) == calls


async def _calls_at_least(proxy: CounterTrouble, calls: int) -> bool:
    return proxy.counter_calls >= calls


async def _count_is(characters: httpx.AsyncClient, owner: FleetUser, character_id: str, count: int) -> bool:
    return await _conversation_count(characters, owner, character_id) == count


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.mark.parametrize(
    ("setting", "service"),
    [("character_service_url", "character-service"), ("user_service_url", "user-service")],
)
async def test_a_service_down_is_503_naming_it_and_nothing_is_created(
    setting: str,
    service: str,
    mongodb_url: str,
    user_service: ServiceProcess,
    character_service: ServiceProcess,
    client: httpx.AsyncClient,
    alice: FleetUser,
    make_character,
) -> None:
    character = await make_character(alice)
    app = _service_with(
        mongodb_url, user_service, character_service, **{setting: f"http://127.0.0.1:{free_port()}"}
    )

    with serve_app(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as down:
            response = await down.post(
                "/api/v1/conversations", json={"character_id": character["id"]}, headers=alice.headers
            )
    listed = await client.get("/api/v1/conversations", headers=alice.headers)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "dependency_unavailable"
    assert response.json()["error"]["details"]["service"] == service
    assert listed.json()["total"] == 0
