"""message-service settings: one home for every environment variable it reads."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from chat_common.mongo import MongoSettings
from chat_common.settings import is_dev_secret

DEV_REDIS_URL = "redis://127.0.0.1:6379/0"


class Settings(MongoSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    service_name: str = "message-service"
    host: str = "127.0.0.1"
    port: int = 8009
    max_body_bytes: int = 262_144  # a message is at most MAX_MESSAGE_CHARS characters

    redis_url: str = DEV_REDIS_URL
    redis_prefix: str = "message-service"

    user_service_url: str = "http://127.0.0.1:8024"
    character_service_url: str = "http://127.0.0.1:8020"
    conversation_service_url: str = "http://127.0.0.1:8003"
    llm_service_url: str = "http://127.0.0.1:8022"
    message_service_client_id: str = "message-service"
    message_service_client_secret: SecretStr = SecretStr("dev-message-service-secret")
    downstream_timeout_seconds: float = Field(default=10.0, gt=0)
    # The longest wait for llm-service's next chunk of a reply (the first one included) before the
    # reply fails: above llm-service's own first-token timeout (300 s), which normally reports first.
    llm_idle_timeout_seconds: float = Field(default=330.0, gt=0)

    # Caches of other services' answers (seconds; 0: none). A cached conversation is forgotten as soon
    # as conversation-service's changes feed names it (read every CONVERSATION_CHANGES_POLL_SECONDS,
    # each read overlapping the last by CONVERSATION_CHANGES_OVERLAP_SECONDS); the cache is not used
    # while the feed could not be read for CONVERSATION_CHANGES_MAX_LAG_SECONDS.
    conversation_cache_seconds: float = Field(default=60.0, ge=0)
    conversation_changes_poll_seconds: float = Field(default=0.5, gt=0)
    conversation_changes_overlap_seconds: float = Field(default=5.0, gt=0)
    conversation_changes_max_lag_seconds: float = Field(default=10.0, gt=0)
    character_cache_seconds: float = Field(default=60.0, ge=0)

    # Messages and generation.
    max_message_chars: int = Field(default=32_000, gt=0)
    default_model: str | None = None  # none: llm-service's default
    default_max_tokens: int = Field(default=512, gt=0)
    max_tokens_limit: int = Field(default=4096, gt=0)
    default_temperature: float = Field(default=0.8, ge=0, le=2)
    default_context_length: int = Field(default=4096, gt=0)  # when llm-service does not tell it

    # Limits shared by every replica (Redis).
    messages_per_minute: int = Field(default=20, gt=0)  # per user, moving window
    max_concurrent_generations: int = Field(default=3, gt=0)  # per user

    # Jobs.
    job_lease_seconds: float = Field(default=30.0, gt=0)  # renewed every third of it while running
    sweep_interval_seconds: float = Field(default=5.0, gt=0)
    stream_retention_seconds: int = Field(default=3600, gt=0)  # a finished reply's events in Redis
    # Follow-ups (conversation activity, character counters) go out in batches: a finished reply's
    # wait at most this long, or until this many replies wait (within the batch routes' limits).
    follow_up_batch_seconds: float = Field(default=0.25, gt=0)
    follow_up_batch_size: int = Field(default=64, gt=0, le=100)
    reply_reservation_seconds: int = Field(
        default=3600, gt=0
    )  # at most user-service's MAX_RESERVATION_TTL_SECONDS
    # A reservation still held this long after it was made, for a reply nobody stored (the process was
    # killed between reserving and storing), is released by the sweeper. A send that has not stored
    # its reply within half of it gives up (503), so the sweeper never takes a slow send for a lost one.
    orphaned_reservation_grace_seconds: int = Field(default=60, gt=0)

    # Credits: per reply, plus per 1k generated tokens (rounded up).
    cost_per_message: int = Field(default=1, ge=0)
    cost_per_1k_tokens: int = Field(default=2, ge=0)

    @model_validator(mode="after")
    def _max_tokens_within_limit(self) -> Settings:
        if self.default_max_tokens > self.max_tokens_limit:
            raise ValueError("DEFAULT_MAX_TOKENS must not exceed MAX_TOKENS_LIMIT")
        return self

    @model_validator(mode="after")
    def _orphans_found_before_they_expire(self) -> Settings:
        if self.orphaned_reservation_grace_seconds >= self.reply_reservation_seconds:
            raise ValueError("ORPHANED_RESERVATION_GRACE_SECONDS must be below REPLY_RESERVATION_SECONDS")
        return self

    @model_validator(mode="after")
    def _changes_read_within_lag(self) -> Settings:
        if self.conversation_changes_max_lag_seconds <= self.conversation_changes_poll_seconds:
            raise ValueError(
                "CONVERSATION_CHANGES_MAX_LAG_SECONDS must exceed CONVERSATION_CHANGES_POLL_SECONDS"
            )
        return self

    def unsafe_production_values(self) -> list[str]:
        problems = super().unsafe_production_values()
        if is_dev_secret(self.message_service_client_secret.get_secret_value()):
            problems.append("MESSAGE_SERVICE_CLIENT_SECRET must be set (not a dev- secret)")
        if self.redis_url == DEV_REDIS_URL:
            problems.append("REDIS_URL must be set")
        return problems


@lru_cache
def get_settings() -> Settings:
    return Settings()
