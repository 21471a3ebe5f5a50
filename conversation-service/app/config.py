"""conversation-service settings: one home for every environment variable it reads."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from chat_common.mongo import MongoSettings
from chat_common.settings import is_dev_secret


class Settings(MongoSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    service_name: str = "conversation-service"
    host: str = "127.0.0.1"
    port: int = 8003
    max_body_bytes: int = 65_536  # titles, ids and flags: nothing large comes in

    user_service_url: str = "http://127.0.0.1:8024"
    character_service_url: str = "http://127.0.0.1:8020"
    conversation_service_client_id: str = "conversation-service"
    conversation_service_client_secret: SecretStr = SecretStr("dev-conversation-service-secret")
    downstream_timeout_seconds: float = Field(default=5.0, gt=0)

    # A session with no heartbeat for this long counts as ended at its last activity.
    session_idle_timeout_seconds: int = Field(default=1800, ge=1)
    # Character counters that character-service did not acknowledge are retried this often.
    counter_retry_interval_seconds: float = Field(default=10.0, gt=0)
    # The deleted-conversations feed shows a deletion only once it is this old, so that a deletion
    # still being written (or stamped by a replica whose clock is a little behind) is not skipped.
    deleted_feed_lag_seconds: float = Field(default=2.0, ge=0)

    # Development without the rest of the fleet: built-in mock auth and character catalogue.
    mock_services: bool = False

    def unsafe_production_values(self) -> list[str]:
        problems = super().unsafe_production_values()
        if self.mock_services:
            problems.append("MOCK_SERVICES must be false")
        if is_dev_secret(self.conversation_service_client_secret.get_secret_value()):
            problems.append("CONVERSATION_SERVICE_CLIENT_SECRET must be set (not a dev- secret)")
        return problems


@lru_cache
def get_settings() -> Settings:
    return Settings()
