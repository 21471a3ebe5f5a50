"""LM Studio hangs (the stand-in process stopped by SIGSTOP: connections open, nothing answers).
Calls that generate nothing answer within MODELS_TIMEOUT_SECONDS, not the generation's total
timeout: the client timeout of 30 s below would fail the test long before TOTAL_TIMEOUT_SECONDS
(120 s here) ran out."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from app.main import create_app
from chat_common.testing import serve_app
from lmstudio_client.testing import StandinProcess
from tests.conftest import ECHO, INITIAL_CREDITS, Account, chat_body, make_settings
from tests.test_billing import RESERVED, ledger_moves


@pytest.fixture
def hang_tolerant_llm(standin: StandinProcess, user_service_url: str) -> Iterator[str]:
    settings = make_settings(
        standin.url, user_service_url, models_timeout_seconds=1.0, total_timeout_seconds=120.0
    )
    with serve_app(create_app(settings)) as url:
        yield url


def _is_lmstudio_timeout(response: httpx.Response) -> None:
    assert response.status_code == 504, response.text
    error = response.json()["error"]
    assert error["code"] == "llm_timeout"
    assert error["details"] == {"service": "lmstudio", "phase": "models"}
    assert error["message"] == "LM Studio timed out (models)"


async def test_models_and_status_answer_promptly_when_lmstudio_hangs(
    standin: StandinProcess, hang_tolerant_llm: str, account: Account
) -> None:
    async with httpx.AsyncClient(base_url=hang_tolerant_llm, headers=account.headers, timeout=30) as http:
        assert (await http.get("/api/v1/models")).status_code == 200  # pooled connections, then the hang
        with standin.frozen():
            listing = await http.get("/api/v1/models")
            one = await http.get(f"/api/v1/models/{ECHO}")
            status = await http.get("/api/v1/status")
    _is_lmstudio_timeout(listing)
    _is_lmstudio_timeout(one)
    assert status.status_code == 200
    lmstudio = status.json()["lmstudio"]
    assert (lmstudio["reachable"], lmstudio["status"]) == (False, "down")
    assert lmstudio["detail"] == "LM Studio did not answer within 1s"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_paid_call_naming_no_model_is_504_and_released_when_lmstudio_hangs(
    standin: StandinProcess, hang_tolerant_llm: str, account: Account, stream: bool
) -> None:
    async with httpx.AsyncClient(base_url=hang_tolerant_llm, headers=account.headers, timeout=30) as http:
        with standin.frozen():
            response = await http.post("/api/v1/chat/completions", json=chat_body(model=None, stream=stream))
    _is_lmstudio_timeout(response)
    assert ledger_moves(account)[1:] == [("reservation", -RESERVED), ("released", RESERVED)]
    assert account.balance() == INITIAL_CREDITS
