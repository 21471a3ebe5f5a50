"""Settings base every service extends: environment, identity, and production safety checks."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_PREFIX = "dev-"


class CommonSettings(BaseSettings):
    """Settings shared by every service. Development defaults work with no configuration at all."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_file_encoding="utf-8")

    service_name: str = "service"
    environment: Literal["development", "test", "production"] = "development"
    debug: bool = False
    log_level: str = "INFO"
    json_logs: bool = True
    cors_origins: list[str] = ["*"]
    max_body_bytes: int = 1_048_576

    jwt_issuer: str = "character-chat-user-service"
    jwt_audience: str = "character-chat"
    jwks_url: str = "http://127.0.0.1:8024/.well-known/jwks.json"
    jwks_cache_seconds: int = 300

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    def unsafe_production_values(self) -> list[str]:
        """Names of settings that must not be used in production; services extend this."""
        problems = []
        if self.debug:
            problems.append("DEBUG must be false")
        if "*" in self.cors_origins:
            problems.append("CORS_ORIGINS must not be a wildcard")
        return problems

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> CommonSettings:
        if self.is_production:
            problems = self.unsafe_production_values()
            if problems:
                raise ValueError("unsafe production settings: " + "; ".join(problems))
        return self


def is_dev_secret(value: str | None) -> bool:
    """A missing secret or one of the shipped development defaults."""
    return not value or value.startswith(DEV_SECRET_PREFIX)
