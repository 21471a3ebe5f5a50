"""Settings base every service extends: environment, identity, and production safety checks."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_PREFIX = "dev-"


class CommonSettings(BaseSettings):
    """Settings shared by every service. Development defaults work with no configuration at all."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_file_encoding="utf-8")

    service_name: str = "service"
    host: str = "127.0.0.1"
    port: int = 8000  # each service sets its own
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed: comma-separated addresses or
    # networks, or "*". Empty (the default): none, so a client cannot claim another IP (login limits
    # count per IP). A deployment behind a reverse proxy names the proxy's address here.
    forwarded_allow_ips: str = ""
    environment: Literal["development", "test", "production"] = "development"
    debug: bool = False
    log_level: str = "INFO"
    json_logs: bool = True
    cors_origins: list[str] = ["*"]
    max_body_bytes: int = 1_048_576

    jwt_issuer: str = "character-chat-user-service"
    jwt_audience: str = "character-chat"
    jwks_url: str = "http://127.0.0.1:8024/.well-known/jwks.json"
    # user-service as a browser reaches it: the OpenAPI documents send Swagger's Authorize there.
    user_service_public_url: str = "http://localhost:8024"
    jwks_cache_seconds: int = 300

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxy_addresses(cls, value: str) -> str:
        proxies = [item.strip() for item in value.split(",") if item.strip()]
        for proxy in proxies:
            if proxy == "*":
                continue
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(
                    f"FORWARDED_ALLOW_IPS: {proxy!r} is not an IP address, a network or '*'"
                ) from None
        return ",".join(proxies)

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
