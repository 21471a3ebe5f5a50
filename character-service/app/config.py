"""character-service settings: one home for every environment variable it reads."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import SettingsConfigDict

from chat_common.database import DatabaseSettings

SERVICE_DIR = Path(__file__).resolve().parent.parent


class Settings(DatabaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    service_name: str = "character-service"
    host: str = "127.0.0.1"
    port: int = 8020
    max_body_bytes: int = 12 * 1_048_576  # card uploads

    max_upload_bytes: int = 10 * 1_048_576
    max_image_pixels: int = 4096 * 4096  # decompression-bomb guard for PNG cards
    max_card_text_bytes: int = (
        6 * 1_048_576
    )  # all text chunks of a PNG card together, decoded (holds 2 MB cards twice)
    max_text_chunks: int = 32  # text chunks (tEXt, zTXt, iTXt) a PNG card may carry
    max_card_json_depth: int = 64  # nesting of a card's JSON (objects and arrays)
    metadata_max_bytes: int = 16_384


@lru_cache
def get_settings() -> Settings:
    return Settings()
