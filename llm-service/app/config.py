"""llm-service settings: one home for every environment variable it reads."""

from __future__ import annotations

from functools import lru_cache

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from chat_common.settings import CommonSettings


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


@lru_cache
def get_settings() -> Settings:
    return Settings()
