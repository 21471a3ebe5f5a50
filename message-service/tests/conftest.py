"""message-service test fixtures: the real fleet (user-, character-, conversation- and llm-service as
processes on the session's embedded PostgreSQL, Redis and MongoDB), the LM Studio stand-in, and
message-service itself in this process over real HTTP."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app
from chat_common.testing import ServiceProcess, serve_app
from chat_common.testing.fleet import (
    ADMIN,
    FleetUser,
    login,
    register_user,
    run_character_service,
    run_conversation_service,
    run_llm_service,
    run_user_service,
)
from lmstudio_client.testing import StandinProcess, run_standin

INITIAL_CREDITS = 1000
DATABASE = f"message_service_test_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def standin() -> Iterator[StandinProcess]:
    with run_standin() as process:
        yield process


@pytest.fixture(autouse=True)
def fresh_standin(standin: StandinProcess) -> None:
    standin.reset()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fleet")


@pytest.fixture(scope="session")
def user_service(postgres_url: str, redis_url: str, data_dir: Path) -> Iterator[ServiceProcess]:
    with run_user_service(postgres_url, redis_url, data_dir, INITIAL_CREDITS=str(INITIAL_CREDITS)) as service:
        yield service


@pytest.fixture(scope="session")
def character_service(
    postgres_url: str, user_service: ServiceProcess, data_dir: Path
) -> Iterator[ServiceProcess]:
    with run_character_service(
        postgres_url, f"{user_service.url}/.well-known/jwks.json", data_dir
    ) as service:
        yield service


@pytest.fixture(scope="session")
def conversation_service(
    mongodb_url: str, user_service: ServiceProcess, character_service: ServiceProcess, data_dir: Path
) -> Iterator[ServiceProcess]:
    with run_conversation_service(mongodb_url, user_service.url, character_service.url, data_dir) as service:
        yield service


@pytest.fixture(scope="session")
def llm_service(
    standin: StandinProcess, user_service: ServiceProcess, data_dir: Path
) -> Iterator[ServiceProcess]:
    with run_llm_service(standin.url, user_service.url, data_dir) as service:
        yield service


def make_settings(
    mongodb_url: str,
    redis_url: str,
    user_service: ServiceProcess,
    character_service: ServiceProcess,
    conversation_service: ServiceProcess,
    llm_service: ServiceProcess,
    **overrides: Any,
) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "json_logs": False,
        "mongodb_url": mongodb_url,
        "mongodb_database": DATABASE,
        "redis_url": redis_url,
        "redis_prefix": f"ms-test-{uuid.uuid4().hex[:8]}",
        "jwks_url": f"{user_service.url}/.well-known/jwks.json",
        "user_service_url": user_service.url,
        "character_service_url": character_service.url,
        "conversation_service_url": conversation_service.url,
        "llm_service_url": llm_service.url,
        "conversation_cache_seconds": 0,
        "messages_per_minute": 1000,
        "max_concurrent_generations": 20,
        "sweep_interval_seconds": 0.5,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture(scope="session")
def settings(
    mongodb_url: str,
    redis_url: str,
    user_service: ServiceProcess,
    character_service: ServiceProcess,
    conversation_service: ServiceProcess,
    llm_service: ServiceProcess,
) -> Settings:
    return make_settings(
        mongodb_url, redis_url, user_service, character_service, conversation_service, llm_service
    )


@pytest.fixture(scope="session")
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture(scope="session")
def base_url(app: FastAPI) -> Iterator[str]:
    with serve_app(app) as url:
        yield url


@pytest.fixture
async def client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        yield http


@pytest.fixture
def alice(user_service: ServiceProcess) -> FleetUser:
    return register_user(user_service.url, "alice")


@pytest.fixture
def bob(user_service: ServiceProcess) -> FleetUser:
    return register_user(user_service.url, "bob")


class Fleet:
    """Calls to the other services, as a test sets the scene."""

    def __init__(
        self,
        user_service: ServiceProcess,
        character_service: ServiceProcess,
        conversation_service: ServiceProcess,
    ) -> None:
        self.users = user_service.url
        self.characters = character_service.url
        self.conversations = conversation_service.url

    def character(self, owner: FleetUser, **fields: Any) -> dict[str, Any]:
        body = {
            "name": "Mira",
            "description": "{{char}} is a sky captain who talks to {{user}}.",
            "greeting": "Welcome aboard, {{user}}!",
            "alternate_greetings": ["Ahoy!"],
            "visibility": "private",
            **fields,
        }
        response = httpx.post(
            f"{self.characters}/api/v1/characters", json=body, headers=owner.headers, timeout=10
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    def conversation(
        self, owner: FleetUser, character_id: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        character_id = character_id or self.character(owner)["id"]
        response = httpx.post(
            f"{self.conversations}/api/v1/conversations",
            json={"character_id": character_id, **fields},
            headers=owner.headers,
            timeout=10,
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    def delete_conversation(self, owner: FleetUser, conversation_id: str) -> None:
        response = httpx.delete(
            f"{self.conversations}/api/v1/conversations/{conversation_id}", headers=owner.headers, timeout=10
        )
        assert response.status_code == 204, response.text

    def read_conversation(self, owner: FleetUser, conversation_id: str) -> dict[str, Any]:
        response = httpx.get(
            f"{self.conversations}/api/v1/conversations/{conversation_id}", headers=owner.headers, timeout=10
        )
        return dict(response.json())

    def balance(self, owner: FleetUser) -> int:
        response = httpx.get(f"{self.users}/api/v1/credits", headers=owner.headers, timeout=10)
        return int(response.json()["balance"])

    def set_balance(self, owner: FleetUser, balance: int) -> None:
        """Grant or deduct (as the fleet's admin) until `owner` has exactly `balance` credits."""
        difference = balance - self.balance(owner)
        if difference:
            admin = login(self.users, ADMIN["username"], ADMIN["password"])
            response = httpx.post(
                f"{self.users}/api/v1/admin/users/{owner.id}/credits",
                json={"amount": difference, "reason": "test"},
                headers={"Authorization": f"Bearer {admin}"},
                timeout=10,
            )
            assert response.status_code == 201, response.text
        assert self.balance(owner) == balance

    def service_headers(self) -> dict[str, str]:
        """Authorization as message-service itself (its dev client credentials, `credits:write`)."""
        token = httpx.post(
            f"{self.users}/api/v1/auth/service-token",
            data={
                "grant_type": "client_credentials",
                "client_id": "message-service",
                "client_secret": Settings.model_fields["message_service_client_secret"]
                .get_default()
                .get_secret_value(),
                "scope": "credits:write",
            },
            timeout=10,
        ).json()["access_token"]
        return {"Authorization": f"Bearer {token}"}

    def reservation(self, reservation_id: str) -> dict[str, Any]:
        """A reservation as user-service keeps it, read as message-service (the client that made it)."""
        response = httpx.get(
            f"{self.users}/api/v1/credits/reservations/{reservation_id}",
            headers=self.service_headers(),
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    def reserve(self, owner: FleetUser, key: str, amount: int) -> dict[str, Any]:
        """A reservation made as message-service makes a reply's, but recorded nowhere (as when its
        process is killed before it stores the reply)."""
        response = httpx.post(
            f"{self.users}/api/v1/credits/reservations",
            json={"user_id": owner.id, "amount": amount, "idempotency_key": key, "reference": "test"},
            headers=self.service_headers(),
            timeout=10,
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    def release(self, reservation_id: str) -> None:
        response = httpx.post(
            f"{self.users}/api/v1/credits/reservations/{reservation_id}/release",
            headers=self.service_headers(),
            timeout=10,
        )
        assert response.status_code == 200, response.text

    def ledger(self, owner: FleetUser) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.users}/api/v1/credits/transactions",
            params={"limit": 100},
            headers=owner.headers,
            timeout=10,
        )
        return list(response.json()["items"])


@pytest.fixture(scope="session")
def fleet(
    user_service: ServiceProcess, character_service: ServiceProcess, conversation_service: ServiceProcess
) -> Fleet:
    return Fleet(user_service, character_service, conversation_service)


@pytest.fixture
def extra_app(
    mongodb_url: str,
    redis_url: str,
    user_service: ServiceProcess,
    character_service: ServiceProcess,
    conversation_service: ServiceProcess,
    llm_service: ServiceProcess,
) -> Iterator[Any]:
    """`extra_app(**overrides)`: another message-service instance (same database and servers, its own
    Redis prefix, unless given) served over real HTTP until the test ends; returns (base URL, settings)."""
    with contextlib.ExitStack() as stack:

        def start(**overrides: Any) -> tuple[str, Settings]:
            settings = make_settings(
                overrides.pop("mongodb_url", mongodb_url),
                overrides.pop("redis_url", redis_url),
                user_service,
                character_service,
                conversation_service,
                llm_service,
                **overrides,
            )
            return stack.enter_context(serve_app(create_app(settings))), settings

        yield start
