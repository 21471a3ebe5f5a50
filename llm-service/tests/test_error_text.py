"""No response body names LM Studio's base URL; the log line with the request id has the details."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from asgi_correlation_id import CorrelationIdFilter

from app.main import create_app
from chat_common.embedded import free_port
from chat_common.testing import serve_app
from lmstudio_client.testing import StandinProcess
from tests.conftest import chat_body, make_settings, sse_events


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.addFilter(CorrelationIdFilter(default_value="-"))
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def error_log() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger("app.services.errors")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def leaks(text: str, base_url: str) -> bool:
    return base_url in text or urlsplit(base_url).netloc in text


@pytest.mark.parametrize("where", ["down", "not_lmstudio"])
@pytest.mark.parametrize("stream", [False, True])
async def test_error_bodies_never_name_the_lmstudio_url(
    standin: StandinProcess,
    user_service_url: str,
    user_token: str,
    error_log: Records,
    where: str,
    stream: bool,
) -> None:
    base_url = f"http://127.0.0.1:{free_port()}" if where == "down" else f"{standin.url}/v1"
    with serve_app(create_app(make_settings(base_url, user_service_url))) as url:
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {user_token}"}) as http:
            response = await http.post("/api/v1/chat/completions", json=chat_body(stream=stream), timeout=10)
            status = await http.get("/api/v1/status")
    assert response.status_code in (502, 503)
    assert not leaks(response.text, base_url) and not leaks(status.text, base_url)
    request_id = response.json()["error"]["request_id"]
    logged = [r for r in error_log.records if getattr(r, "correlation_id", None) == request_id]
    assert logged and leaks(logged[0].getMessage(), base_url)


async def test_an_error_mid_stream_does_not_name_the_url(
    user_service_url: str, user_token: str, standin: StandinProcess
) -> None:
    standin.configure(failure="disconnect", disconnect_after=2, tokens_per_second=20)
    with serve_app(create_app(make_settings(standin.url, user_service_url))) as url:
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {user_token}"}) as http:
            response = await http.post("/api/v1/chat/completions", json=chat_body("w " * 9, stream=True))
    assert sse_events(response.text)[-1]["error"]["code"] == "llm_error"
    assert not leaks(response.text, standin.url)
