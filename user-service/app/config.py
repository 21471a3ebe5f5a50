"""user-service settings: one home for every environment variable it reads."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from app.schemas.credit import MAX_BALANCE
from chat_common.database import DatabaseSettings
from chat_common.settings import is_dev_secret

SERVICE_DIR = Path(__file__).resolve().parent.parent


class ServiceClientConfig(BaseModel):
    """An internal service allowed to obtain service tokens by client credentials."""

    secret: SecretStr
    scopes: list[str]


DEV_SERVICE_CLIENTS = {
    "message-service": ServiceClientConfig(
        secret=SecretStr("dev-message-service-secret"),
        scopes=[
            "credits:write",
            "characters:counters",
            "characters:read_private",
            "conversations:read",
            "conversations:write",
            "llm:generate",
        ],
    ),
    "conversation-service": ServiceClientConfig(
        secret=SecretStr("dev-conversation-service-secret"), scopes=["characters:counters", "personas:read"]
    ),
    "llm-service": ServiceClientConfig(secret=SecretStr("dev-llm-service-secret"), scopes=["credits:write"]),
}


def default_hash_concurrency() -> int:
    """The cores this process may use, minus one left for the event loop; at least one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores - 1)


class Settings(DatabaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    service_name: str = "user-service"
    host: str = "127.0.0.1"
    port: int = 8024
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "user-service"
    data_dir: Path = Path(".data")

    jwt_private_key: SecretStr | None = None
    jwt_private_key_file: Path | None = None
    # After a key rotation, the old public key(s), so tokens it signed stay valid until they expire.
    jwt_previous_public_keys: list[str] = []
    access_token_minutes: int = 30
    refresh_token_days: int = 30
    service_token_minutes: int = 15
    service_clients: dict[str, ServiceClientConfig] = DEV_SERVICE_CLIENTS

    bcrypt_rounds: int = 12
    # bcrypt hashes running at once; more wait their turn instead of starving the event loop
    password_hash_concurrency: int = Field(default_factory=default_hash_concurrency, ge=1)
    password_min_length: int = 8
    login_account_limit: str = "5/minute"
    login_ip_limit: str = "30/minute"

    initial_credits: int = Field(default=100, ge=0, le=MAX_BALANCE)
    # How long a reservation is held unsettled before the sweeper expires it (its credits go back):
    # the default, and the most a reserving client may ask for with `ttl_seconds`.
    reservation_ttl_seconds: int = Field(default=300, ge=1)
    max_reservation_ttl_seconds: int = Field(default=3600, ge=1)
    reservation_sweep_seconds: float = 30.0

    max_personas_per_user: int = Field(default=20, ge=1)

    first_admin_email: str | None = None
    first_admin_password: SecretStr | None = None
    first_admin_username: str = "admin"

    @model_validator(mode="after")
    def _default_ttl_within_max(self) -> Settings:
        if self.reservation_ttl_seconds > self.max_reservation_ttl_seconds:
            raise ValueError("RESERVATION_TTL_SECONDS must not exceed MAX_RESERVATION_TTL_SECONDS")
        return self

    def unsafe_production_values(self) -> list[str]:
        problems = super().unsafe_production_values()
        if not self.jwt_private_key and not self.jwt_private_key_file:
            problems.append("JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_FILE is required")
        for client_id, client in self.service_clients.items():
            if is_dev_secret(client.secret.get_secret_value()):
                problems.append(f"SERVICE_CLIENTS[{client_id}] uses a development secret")
        if self.bcrypt_rounds < 10:
            problems.append("BCRYPT_ROUNDS must be at least 10")
        return problems


@lru_cache
def get_settings() -> Settings:
    return Settings()
