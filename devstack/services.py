"""The fleet as devstack runs it: one entry per service, nothing else to change to add one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

Urls = dict[str, str]


@dataclass(frozen=True)
class ServiceSpec:
    """How to start one service: its directory (with run.py), port, and environment from the URLs."""

    name: str
    port: int
    env: Callable[[Urls], dict[str, str]] = field(default=lambda urls: {})
    needs: tuple[str, ...] = ("postgres", "redis")

    @property
    def port_variable(self) -> str:
        """The environment variable that moves this service off its fixed port: USER_SERVICE_PORT..."""
        return self.name.upper().replace("-", "_") + "_PORT"


def jwks(urls: Urls) -> dict[str, str]:
    """Every service but user-service verifies tokens with user-service's published keys (and sends
    Swagger's Authorize there, wherever user-service was moved)."""
    return {
        "JWKS_URL": f"{urls['user-service']}/.well-known/jwks.json",
        "USER_SERVICE_PUBLIC_URL": urls["user-service"],
    }


SERVICES: list[ServiceSpec] = [
    ServiceSpec(
        "user-service",
        8024,
        lambda urls: {"DATABASE_URL": urls["postgres"], "REDIS_URL": urls["redis"]},
    ),
    ServiceSpec(
        "character-service",
        8020,
        lambda urls: {**jwks(urls), "DATABASE_URL": urls["postgres"]},
        needs=("postgres",),
    ),
    ServiceSpec(
        "conversation-service",
        8003,
        lambda urls: {
            **jwks(urls),
            "MONGODB_URL": urls["mongodb"],
            "USER_SERVICE_URL": urls["user-service"],  # personas (service token)
            "CHARACTER_SERVICE_URL": urls["character-service"],  # snapshots and counters
            "MOCK_SERVICES": "false",  # the real fleet, even if .env asks for mock mode
        },
        needs=("mongodb",),
    ),
    ServiceSpec(
        "llm-service",
        8022,
        lambda urls: {
            **jwks(urls),
            "LMSTUDIO_BASE_URL": urls["lmstudio"],
            "USER_SERVICE_URL": urls["user-service"],  # credits for direct use
        },
        needs=("lmstudio",),
    ),
    ServiceSpec(
        "message-service",
        8009,
        lambda urls: {
            **jwks(urls),
            "MONGODB_URL": urls["mongodb"],
            "REDIS_URL": urls["redis"],
            "REDIS_PREFIX": "message-service",  # apart from user-service's keys on the same Redis
            "USER_SERVICE_URL": urls["user-service"],  # credits (service token)
            "CHARACTER_SERVICE_URL": urls["character-service"],  # the card and message counters
            "CONVERSATION_SERVICE_URL": urls["conversation-service"],  # ownership, activity, deletions
            "LLM_SERVICE_URL": urls["llm-service"],  # replies (llm:generate)
        },
        needs=("mongodb", "redis"),
    ),
]
