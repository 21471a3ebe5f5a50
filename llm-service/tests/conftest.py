"""llm-service test fixtures: a stand-in process, a real user-service process, llm-service on real ports.

user-service is the real one (`python run.py` on the session's PostgreSQL and Redis): llm-service
verifies tokens with its JWKS and pays for direct calls through its credits API. Only LM Studio
has a stand-in.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.main import create_app
from chat_common.testing import ServiceProcess, fleet, serve_app
from chat_common.testing.fleet import ADMIN, login
from lmstudio_client.testing import StandinProcess, run_standin

ECHO = "lmstudio-standin/echo-7b"
MINI = "lmstudio-standin/echo-mini"
EMBED = "lmstudio-standin/embed-small"

INITIAL_CREDITS = 1000
# A cost model that makes bills easy to check: 2 credits a request and 1 per generated token.
COSTS: dict[str, Any] = {
    "direct_cost_per_request": 2,
    "direct_cost_per_1k_tokens": 1000,
    "direct_default_max_tokens": 64,
    "direct_max_tokens": 200,
}


@pytest.fixture(scope="session")
def standin() -> Iterator[StandinProcess]:
    with run_standin() as process:
        yield process


@pytest.fixture(autouse=True)
def fresh_standin(standin: StandinProcess) -> None:
    """Every test starts from the stand-in's defaults (no failures, zero delays, stats at zero)."""
    standin.reset()


@contextmanager
def run_user_service(
    postgres_url: str, redis_url: str, data_dir: Path, database_url: str | None = None, **env_overrides: str
) -> Iterator[ServiceProcess]:
    """A real user-service process on its own fresh database (`database_url`, or a new one), every
    account starting with INITIAL_CREDITS."""
    env = {"INITIAL_CREDITS": str(INITIAL_CREDITS), **env_overrides}
    with fleet.run_user_service(
        postgres_url, redis_url, data_dir, database_url=database_url, **env
    ) as service:
        yield service


@pytest.fixture(scope="session")
def user_service(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """Sync on purpose: async fixtures (the contract's `door`) ask for it while the loop runs."""
    with run_user_service(postgres_url, redis_url, tmp_path_factory.mktemp("user-service")) as service:
        yield service


@pytest.fixture(scope="session")
def user_service_url(user_service: ServiceProcess) -> str:
    return user_service.url


@pytest.fixture(scope="session")
def jwks_url(user_service_url: str) -> str:
    """user-service's real JWKS (overrides chat_common's token-mint JWKS)."""
    return f"{user_service_url}/.well-known/jwks.json"


def make_settings(standin_url: str, user_service_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "json_logs": False,
        "lmstudio_base_url": standin_url,
        "jwks_url": f"{user_service_url}/.well-known/jwks.json",
        "user_service_url": user_service_url,
        "connect_timeout_seconds": 1.0,
        "first_token_timeout_seconds": 1.5,
        "idle_timeout_seconds": 5.0,
        "total_timeout_seconds": 20.0,
        **COSTS,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture(scope="session")
def llm_url(standin: StandinProcess, user_service_url: str) -> Iterator[str]:
    with serve_app(create_app(make_settings(standin.url, user_service_url))) as url:
        yield url


@dataclass
class Account:
    """A user registered at the real user-service, with an access token."""

    id: str
    token: str
    user_service_url: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def balance(self) -> int:
        response = httpx.get(f"{self.user_service_url}/api/v1/credits", headers=self.headers, timeout=10)
        response.raise_for_status()
        return int(response.json()["balance"])

    def ledger(self) -> list[dict[str, Any]]:
        """The ledger, oldest first."""
        response = httpx.get(
            f"{self.user_service_url}/api/v1/credits/transactions",
            params={"limit": 100},
            headers=self.headers,
            timeout=10,
        )
        response.raise_for_status()
        return list(reversed(response.json()["items"]))


def register(user_service_url: str) -> Account:
    user = fleet.register_user(user_service_url, "llm")
    return Account(user.id, user.token, user_service_url)


@pytest.fixture
def account(user_service_url: str) -> Account:
    """A fresh user per test, starting with exactly INITIAL_CREDITS."""
    return register(user_service_url)


@pytest.fixture
def user_token(account: Account) -> str:
    return account.token


@pytest.fixture
def admin_token(user_service_url: str) -> str:
    return login(user_service_url, ADMIN["username"], ADMIN["password"])


def service_token(user_service_url: str, client_id: str, secret: str, scope: str) -> str:
    """A real service token from user-service by client credentials."""
    response = httpx.post(
        f"{user_service_url}/api/v1/auth/service-token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": scope,
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


@pytest.fixture
async def client(llm_url: str, user_token: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {user_token}"}
    async with httpx.AsyncClient(base_url=llm_url, headers=headers, timeout=30) as http:
        yield http


def chat_body(content: str = "hello there", model: str | None = ECHO, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": content}], **extra}
    if model:
        body["model"] = model
    return body


def sse_events(text: str) -> list[Any]:
    """The `data:` payloads of an SSE body, JSON-decoded except `[DONE]`."""
    events: list[Any] = []
    for line in text.splitlines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events
