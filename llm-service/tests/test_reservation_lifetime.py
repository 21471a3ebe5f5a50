"""A paid call's reservation lives as long as the call may take; an account that is deactivated
gets no generation. user-service here is a real process whose default reservation lifetime is
2 s (swept every 0.5 s), far shorter than the replies below."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest

from app.config import Settings
from app.main import create_app
from chat_common.testing import ServiceProcess, serve_app
from lmstudio_client.testing import StandinProcess
from tests.conftest import (
    ADMIN,
    INITIAL_CREDITS,
    Account,
    chat_body,
    login,
    make_settings,
    register,
    run_user_service,
    service_token,
)
from tests.test_billing import ledger_moves

LONG = "word " * 20  # the stand-in answers "You said: word word ...": 22 tokens
LONG_TOKENS = 22
RESERVED = 2 + 64


@pytest.fixture(scope="module")
def short_ttl_user_service(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    data_dir = tmp_path_factory.mktemp("short-ttl-user-service")
    overrides = {"RESERVATION_TTL_SECONDS": "2", "RESERVATION_SWEEP_SECONDS": "0.5"}
    with run_user_service(postgres_url, redis_url, data_dir, **overrides) as service:
        yield service


def _reservation(user_service_url: str, reservation_id: str) -> dict[str, object]:
    """The reservation as llm-service's own client sees it at user-service."""
    token = service_token(user_service_url, "llm-service", "dev-llm-service-secret", "credits:write")
    response = httpx.get(
        f"{user_service_url}/api/v1/credits/reservations/{reservation_id}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def metering_log() -> Iterator[list[logging.LogRecord]]:
    """What llm-service's metering logs (the app's logging set-up replaces pytest's handlers)."""
    handler = _Collect()
    logger = logging.getLogger("app.services.metering")
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)


def test_the_requested_lifetime_covers_queue_generation_and_settling() -> None:
    settings = Settings(
        queue_timeout_seconds=120, total_timeout_seconds=900, credits_settle_margin_seconds=300
    )
    assert settings.reservation_ttl_seconds == 1320
    capped = Settings(total_timeout_seconds=5000, credits_max_reservation_seconds=3600)
    assert capped.reservation_ttl_seconds == 3600


async def test_a_reply_longer_than_the_default_lifetime_is_still_charged(
    standin: StandinProcess, short_ttl_user_service: ServiceProcess
) -> None:
    url = short_ttl_user_service.url
    account = register(url)
    settings = make_settings(standin.url, url)
    standin.configure(tokens_per_second=6)  # about 4 s of reply: twice the default lifetime
    with serve_app(create_app(settings)) as llm:
        async with httpx.AsyncClient(base_url=llm, headers=account.headers, timeout=60) as http:
            response = await http.post("/api/v1/chat/completions", json=chat_body(LONG))
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] == LONG_TOKENS
    assert ledger_moves(account) == [
        ("signup_bonus", INITIAL_CREDITS),
        ("reservation", -RESERVED),
        ("refund", RESERVED - (2 + LONG_TOKENS)),
    ]
    assert account.balance() == INITIAL_CREDITS - (2 + LONG_TOKENS)
    reservation = _reservation(url, account.ledger()[1]["reservation_id"])
    lifetime = datetime.fromisoformat(str(reservation["expires_at"])) - datetime.fromisoformat(
        str(reservation["created_at"])
    )
    assert lifetime.total_seconds() == settings.reservation_ttl_seconds == 120 + 20 + 300
    assert (reservation["status"], reservation["committed_amount"]) == ("committed", 2 + LONG_TOKENS)


async def test_a_commit_after_the_reservation_expired_is_logged_as_an_error(
    standin: StandinProcess, short_ttl_user_service: ServiceProcess, metering_log: list[logging.LogRecord]
) -> None:
    url = short_ttl_user_service.url
    account = register(url)
    # A lifetime capped below the reply's length (a misconfiguration): the commit comes too late.
    settings = make_settings(standin.url, url, credits_max_reservation_seconds=1)
    standin.configure(tokens_per_second=6)
    with serve_app(create_app(settings)) as llm:
        async with httpx.AsyncClient(base_url=llm, headers=account.headers, timeout=60) as http:
            response = await http.post("/api/v1/chat/completions", json=chat_body(LONG))
    assert response.status_code == 200
    assert ledger_moves(account)[1:] == [("reservation", -RESERVED), ("expired", RESERVED)]
    reservation_id = account.ledger()[1]["reservation_id"]
    errors = [r for r in metering_log if r.levelno == logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in metering_log]
    message = errors[0].getMessage()
    assert reservation_id in message and f"{2 + LONG_TOKENS} credits" in message
    assert "expired before" in message and "not charged" in message


def _set_active(user_service_url: str, account: Account, active: bool) -> None:
    admin = login(user_service_url, ADMIN["username"], ADMIN["password"])
    response = httpx.patch(
        f"{user_service_url}/api/v1/admin/users/{account.id}",
        json={"is_active": active},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text


async def test_a_deactivated_account_gets_no_generation(
    standin: StandinProcess, llm_url: str, account: Account, user_service_url: str
) -> None:
    _set_active(user_service_url, account, False)  # its access token stays valid until it expires
    async with httpx.AsyncClient(base_url=llm_url, headers=account.headers, timeout=30) as http:
        responses = [
            await http.post("/api/v1/chat/completions", json=chat_body()),
            await http.post("/api/v1/chat/completions", json=chat_body(stream=True)),
            await http.post("/api/v1/completions", json={"prompt": "x"}),
        ]
    for response in responses:
        assert response.status_code == 403, response.text
        error = response.json()["error"]
        assert error["code"] == "account_inactive" and error["request_id"]
        assert error["message"] == "This account is deactivated: it cannot generate"
    assert standin.stats()["requests"] == 0
    _set_active(user_service_url, account, True)
    assert ledger_moves(account) == [("signup_bonus", INITIAL_CREDITS)]
