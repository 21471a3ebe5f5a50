"""The fleet's own services as real processes for other services' tests, and users registered at them.

A service under test talks to the real user-service (tokens, JWKS, personas, credits) and the real
character-service over HTTP; only LM Studio has a stand-in.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from chat_common.testing.postgres import create_database
from chat_common.testing.processes import ServiceProcess, serve_service

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[4]
PASSWORD = "Sturdy-pass-2024"
ADMIN = {"username": "root@example.com", "password": "Admin-pass-2024"}


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to the end from sync code, even when called inside a running event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@contextmanager
def run_user_service(
    postgres_url: str,
    redis_url: str,
    data_dir: Path,
    *,
    database_url: str | None = None,
    port: int | None = None,
    **env: str,
) -> Iterator[ServiceProcess]:
    """A real user-service on its own fresh database (or `database_url`), quick hashing, no login
    limits in the way, and the first admin of `ADMIN`. Its signing key lives in `data_dir`, so a
    restart on the same `data_dir`, `database_url` and `port` is the same user-service again."""
    values = {
        "ENVIRONMENT": "test",
        "DATABASE_URL": database_url or run_sync(create_database(postgres_url, "users")),
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": f"test-{uuid.uuid4().hex[:8]}",
        "DATA_DIR": str(data_dir),
        "JSON_LOGS": "false",
        "BCRYPT_ROUNDS": "4",
        "LOGIN_ACCOUNT_LIMIT": "1000/minute",
        "LOGIN_IP_LIMIT": "100000/minute",
        "RESERVATION_SWEEP_SECONDS": "3600",
        "FIRST_ADMIN_EMAIL": ADMIN["username"],
        "FIRST_ADMIN_PASSWORD": ADMIN["password"],
        "FIRST_ADMIN_USERNAME": "root",
        **env,
    }
    with serve_service(
        REPO_ROOT / "user-service", values, log_path=data_dir / "user-service.log", port=port
    ) as service:
        yield service


@contextmanager
def run_character_service(
    postgres_url: str,
    jwks_url: str,
    data_dir: Path,
    *,
    database_url: str | None = None,
    port: int | None = None,
    **env: str,
) -> Iterator[ServiceProcess]:
    """A real character-service on its own fresh database (or `database_url`: a restart keeps its
    characters), trusting `jwks_url`."""
    values = {
        "ENVIRONMENT": "test",
        "DATABASE_URL": database_url or run_sync(create_database(postgres_url, "characters")),
        "JWKS_URL": jwks_url,
        "JSON_LOGS": "false",
        **env,
    }
    with serve_service(
        REPO_ROOT / "character-service", values, log_path=data_dir / "character-service.log", port=port
    ) as service:
        yield service


@dataclass(frozen=True)
class MessageServiceDownstream:
    """Where message-service finds the services it calls."""

    user_service: str
    character_service: str
    conversation_service: str
    llm_service: str


@dataclass
class FleetUser:
    """A user registered at the real user-service, signed in."""

    id: str
    username: str
    display_name: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def login(user_service_url: str, username: str, password: str = PASSWORD) -> str:
    response = httpx.post(
        f"{user_service_url}/api/v1/auth/token",
        data={"username": username, "password": password},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def register_user(user_service_url: str, prefix: str = "user") -> FleetUser:
    suffix = uuid.uuid4().hex[:10]
    body = {
        "email": f"{prefix}{suffix}@example.com",
        "username": f"{prefix}{suffix}",
        "display_name": f"{prefix.title()} {suffix}",
        "password": PASSWORD,
    }
    created = httpx.post(f"{user_service_url}/api/v1/auth/register", json=body, timeout=10)
    assert created.status_code == 201, created.text
    token = login(user_service_url, body["username"])
    return FleetUser(str(created.json()["id"]), body["username"], body["display_name"], token)


def create_character(
    http: httpx.Client, character_service_url: str, owner: FleetUser, **fields: Any
) -> dict[str, Any]:
    """A private character of `owner` (Mira, with a greeting), `fields` overriding the defaults."""
    body = {
        "name": "Mira",
        "description": "{{char}} is a sky captain who talks to {{user}}.",
        "greeting": "Welcome aboard, {{user}}!",
        "visibility": "private",
        **fields,
    }
    response = http.post(f"{character_service_url}/api/v1/characters", json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def create_conversation(
    http: httpx.Client, conversation_service_url: str, owner: FleetUser, character_id: str
) -> dict[str, Any]:
    response = http.post(
        f"{conversation_service_url}/api/v1/conversations",
        json={"character_id": character_id},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


@contextmanager
def run_conversation_service(
    mongodb_url: str,
    user_service_url: str,
    character_service_url: str,
    data_dir: Path,
    *,
    port: int | None = None,
    **env: str,
) -> Iterator[ServiceProcess]:
    """A real conversation-service on its own MongoDB database, trusting user-service's JWKS."""
    values = {
        "ENVIRONMENT": "test",
        "MONGODB_URL": mongodb_url,
        "MONGODB_DATABASE": f"conversations_{uuid.uuid4().hex[:8]}",
        "JWKS_URL": f"{user_service_url}/.well-known/jwks.json",
        "USER_SERVICE_URL": user_service_url,
        "CHARACTER_SERVICE_URL": character_service_url,
        "DELETED_FEED_LAG_SECONDS": "0",
        "JSON_LOGS": "false",
        **env,
    }
    with serve_service(
        REPO_ROOT / "conversation-service",
        values,
        log_path=data_dir / "conversation-service.log",
        port=port,
    ) as service:
        yield service


@contextmanager
def run_llm_service(
    lmstudio_url: str, user_service_url: str, data_dir: Path, *, port: int | None = None, **env: str
) -> Iterator[ServiceProcess]:
    """A real llm-service in front of `lmstudio_url` (the stand-in), paid through user-service."""
    values = {
        "ENVIRONMENT": "test",
        "LMSTUDIO_BASE_URL": lmstudio_url,
        "JWKS_URL": f"{user_service_url}/.well-known/jwks.json",
        "USER_SERVICE_URL": user_service_url,
        "JSON_LOGS": "false",
        **env,
    }
    with serve_service(
        REPO_ROOT / "llm-service", values, log_path=data_dir / "llm-service.log", port=port
    ) as service:
        yield service


@contextmanager
def run_message_service(
    mongodb_url: str,
    redis_url: str,
    urls: MessageServiceDownstream,
    data_dir: Path,
    *,
    port: int | None = None,
    **env: str,
) -> Iterator[ServiceProcess]:
    """A real message-service on its own MongoDB database and Redis prefix, calling the services of
    `urls` and trusting user-service's JWKS."""
    values = {
        "ENVIRONMENT": "test",
        "MONGODB_URL": mongodb_url,
        "MONGODB_DATABASE": f"messages_{uuid.uuid4().hex[:8]}",
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": f"test-ms-{uuid.uuid4().hex[:8]}",
        "JWKS_URL": f"{urls.user_service}/.well-known/jwks.json",
        "USER_SERVICE_URL": urls.user_service,
        "CHARACTER_SERVICE_URL": urls.character_service,
        "CONVERSATION_SERVICE_URL": urls.conversation_service,
        "LLM_SERVICE_URL": urls.llm_service,
        "JSON_LOGS": "false",
        **env,
    }
    with serve_service(
        REPO_ROOT / "message-service", values, log_path=data_dir / "message-service.log", port=port
    ) as service:
        yield service
