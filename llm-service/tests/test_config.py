"""llm-service settings refuse what would make direct use unpaid or unsafe."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from app.config import Settings


def test_production_refuses_the_dev_client_secret() -> None:
    with pytest.raises(ValidationError, match="LLM_SERVICE_CLIENT_SECRET"):
        Settings(environment="production", cors_origins=["https://chat.example.com"])
    accepted = Settings(
        environment="production",
        cors_origins=["https://chat.example.com"],
        llm_service_client_secret=SecretStr("a-real-secret-4096"),
    )
    assert accepted.llm_service_client_secret.get_secret_value() == "a-real-secret-4096"


def test_the_default_max_tokens_must_fit_the_cap() -> None:
    with pytest.raises(ValidationError, match="DIRECT_DEFAULT_MAX_TOKENS"):
        Settings(direct_default_max_tokens=500, direct_max_tokens=100)


@pytest.mark.parametrize("field", ["direct_cost_per_request", "direct_cost_per_1k_tokens"])
def test_costs_cannot_be_negative(field: str) -> None:
    with pytest.raises(ValidationError):
        Settings(**{field: -1})
