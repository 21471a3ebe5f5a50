"""Production settings refuse the development defaults."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from app.config import ServiceClientConfig, Settings

SAFE = {
    "environment": "production",
    "cors_origins": ["https://chat.example"],
    "jwt_private_key": "-----BEGIN PRIVATE KEY-----...",
    "database_url": "postgresql://chat:s3cret@db:5432/chatbot",
    "service_clients": {"message-service": ServiceClientConfig(secret=SecretStr("s3cr3t-long"), scopes=[])},
}


def test_production_accepts_real_settings() -> None:
    assert Settings(**SAFE).is_production  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("override", "complaint"),
    [
        ({"jwt_private_key": None}, "JWT_PRIVATE_KEY"),
        ({"service_clients": None}, "development secret"),
        ({"bcrypt_rounds": 4}, "BCRYPT_ROUNDS"),
        ({"cors_origins": ["*"]}, "CORS_ORIGINS"),
        ({"database_url": None}, "DATABASE_URL"),
    ],
)
def test_production_refuses_unsafe_defaults(override: dict[str, object], complaint: str) -> None:
    values = {**SAFE, **override}
    values = {k: v for k, v in values.items() if v is not None}
    with pytest.raises(ValidationError, match=complaint):
        Settings(**values)  # type: ignore[arg-type]


def test_database_url_must_be_postgres() -> None:
    with pytest.raises(ValidationError, match="postgresql"):
        Settings(database_url="mysql://x")


def test_the_default_reservation_lifetime_must_fit_the_maximum() -> None:
    assert (
        Settings(reservation_ttl_seconds=3600, max_reservation_ttl_seconds=3600).reservation_ttl_seconds
        == 3600
    )
    with pytest.raises(ValidationError, match="RESERVATION_TTL_SECONDS must not exceed"):
        Settings(reservation_ttl_seconds=3601, max_reservation_ttl_seconds=3600)
