"""llm-service settings: one home for every environment variable it reads."""

from __future__ import annotations

import math
from functools import lru_cache

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from chat_common.settings import CommonSettings, is_dev_secret


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    service_name: str = "llm-service"
    host: str = "127.0.0.1"
    port: int = 8022
    max_body_bytes: int = 4 * 1_048_576  # long prompts

    lmstudio_base_url: str = "http://localhost:1234"
    lmstudio_api_key: SecretStr | None = None
    default_model: str | None = None  # none: the first loaded LLM
    model_aliases: dict[str, str] = {}  # e.g. {"default-chat": "qwen2.5-7b-instruct"}
    models_cache_seconds: float = 5.0

    max_concurrency: int = 4  # requests in flight toward LM Studio
    max_queue: int = 16  # requests allowed to wait for a slot; beyond: 429
    queue_timeout_seconds: float = 120.0
    retry_after_seconds: int = 2

    connect_timeout_seconds: float = 3.0
    first_token_timeout_seconds: float = 300.0
    idle_timeout_seconds: float = 60.0
    total_timeout_seconds: float = 900.0
    # LM Studio calls that generate nothing (model list and info, /status, choosing the model of a
    # request that names none) answer at once unless LM Studio hangs: told promptly, not after TOTAL.
    models_timeout_seconds: float = Field(default=10.0, gt=0)
    load_timeout_seconds: float = Field(default=300.0, gt=0)  # loading a model can take minutes

    # Direct use with a user's token is paid in credits at user-service (service tokens carrying
    # `llm:generate` are served unmetered: their caller pays). Cost: per request + per 1k generated tokens.
    user_service_url: str = "http://127.0.0.1:8024"
    llm_service_client_id: str = "llm-service"
    llm_service_client_secret: SecretStr = SecretStr("dev-llm-service-secret")
    credits_timeout_seconds: float = 10.0
    # A paid call's credits are held at user-service for as long as the call may take: the queue wait,
    # the whole generation and this margin to settle; at most the most user-service grants
    # (its MAX_RESERVATION_TTL_SECONDS). A reservation that expires first is given back unpaid.
    credits_settle_margin_seconds: float = Field(default=300.0, ge=0)
    credits_max_reservation_seconds: int = Field(default=3600, ge=1)
    direct_cost_per_request: int = Field(default=1, ge=0)
    direct_cost_per_1k_tokens: int = Field(default=2, ge=0)
    direct_default_max_tokens: int = Field(default=1024, gt=0)  # when a request names no max_tokens
    direct_max_tokens: int = Field(default=8192, gt=0)  # larger max_tokens are lowered to this

    @model_validator(mode="after")
    def _default_within_cap(self) -> Settings:
        if self.direct_default_max_tokens > self.direct_max_tokens:
            raise ValueError("DIRECT_DEFAULT_MAX_TOKENS must not exceed DIRECT_MAX_TOKENS")
        return self

    @property
    def reservation_ttl_uncapped(self) -> int:
        return math.ceil(
            self.queue_timeout_seconds + self.total_timeout_seconds + self.credits_settle_margin_seconds
        )

    @property
    def reservation_ttl_seconds(self) -> int:
        """The lifetime llm-service asks for its credit reservations."""
        return max(1, min(self.reservation_ttl_uncapped, self.credits_max_reservation_seconds))

    def unsafe_production_values(self) -> list[str]:
        problems = super().unsafe_production_values()
        if is_dev_secret(self.llm_service_client_secret.get_secret_value()):
            problems.append("LLM_SERVICE_CLIENT_SECRET must be set (not a dev- secret)")
        return problems


@lru_cache
def get_settings() -> Settings:
    return Settings()
