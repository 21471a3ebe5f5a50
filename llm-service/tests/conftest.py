"""llm-service test fixtures: a stand-in process, a JWKS issuer, and llm-service on real ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.main import create_app
from chat_common.testing import TokenMint, serve_app
from lmstudio_client.testing import StandinProcess, run_standin

ECHO = "lmstudio-standin/echo-7b"
MINI = "lmstudio-standin/echo-mini"
EMBED = "lmstudio-standin/embed-small"


@pytest.fixture(scope="session")
def standin() -> Iterator[StandinProcess]:
    with run_standin() as process:
        yield process


@pytest.fixture(autouse=True)
def fresh_standin(standin: StandinProcess) -> None:
    """Every test starts from the stand-in's defaults (no failures, zero delays, stats at zero)."""
    standin.reset()


def make_settings(standin_url: str, jwks_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "json_logs": False,
        "lmstudio_base_url": standin_url,
        "jwks_url": jwks_url,
        "connect_timeout_seconds": 1.0,
        "first_token_timeout_seconds": 1.5,
        "idle_timeout_seconds": 5.0,
        "total_timeout_seconds": 20.0,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture(scope="session")
def llm_url(standin: StandinProcess, jwks_url: str) -> Iterator[str]:
    with serve_app(create_app(make_settings(standin.url, jwks_url))) as url:
        yield url


@pytest.fixture(scope="session")
def user_token(token_mint: TokenMint) -> str:
    return token_mint.user()


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
    import json

    events: list[Any] = []
    for line in text.splitlines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events
