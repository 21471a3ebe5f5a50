"""The shared app factory: error envelope, request ids, body limit, health and production checks."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from chat_common.app import create_service_app
from chat_common.errors import ConflictError
from chat_common.settings import CommonSettings


def make_app() -> FastAPI:
    settings = CommonSettings(service_name="demo", max_body_bytes=100, json_logs=True)
    app = create_service_app(settings, title="demo", description="demo")

    @app.get("/conflict")
    async def conflict() -> None:
        logging.getLogger("demo").info("refusing with a conflict")
        raise ConflictError("already there", details={"id": 1})

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("secret internals")

    @app.post("/echo")
    async def echo(body: dict[str, int]) -> dict[str, int]:
        return body

    async def failing() -> None:
        raise ConnectionError("db down at 10.1.2.3:5432")

    app.state.readiness_checks = {"db": failing}
    return app


@pytest.fixture
async def client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=make_app(), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://demo")


async def test_app_error_uses_the_envelope(client: httpx.AsyncClient) -> None:
    response = await client.get("/conflict", headers={"X-Request-ID": "abc-1"})
    assert response.status_code == 409
    assert response.json() == {
        "error": {"code": "conflict", "message": "already there", "details": {"id": 1}, "request_id": "abc-1"}
    }


async def test_unhandled_error_is_500_without_internals(client: httpx.AsyncClient) -> None:
    response = await client.get("/crash")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "secret" not in response.text


async def test_an_unhandled_errors_500_names_its_request_id_in_the_header_as_in_the_body(
    client: httpx.AsyncClient,
) -> None:
    """The schema fuzzer found a 500 whose body gave a request id its headers did not."""
    given = await client.get("/crash", headers={"X-Request-ID": "abc-500"})
    assert given.headers["X-Request-ID"] == given.json()["error"]["request_id"] == "abc-500"
    generated = await client.get("/crash")
    assert generated.headers["X-Request-ID"] == generated.json()["error"]["request_id"]


async def test_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post("/echo", json={"a" * 200: 1})
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


async def test_hostile_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    response = await client.get("/conflict", headers={"X-Request-ID": "bad id\twith spaces"})
    assert response.json()["error"]["request_id"] != "bad id\twith spaces"


async def test_ready_reports_failing_check_as_503(client: httpx.AsyncClient) -> None:
    response = await client.get("/ready")
    assert response.status_code == 503
    assert response.json() == {"status": "not_ready", "service": "demo", "checks": {"db": "error"}}
    assert (await client.get("/health")).status_code == 200


async def test_ready_logs_the_failure_and_keeps_it_out_of_the_body(
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app()), base_url="http://demo")
    response = await client.get("/ready", headers={"X-Request-ID": "ready-1"})
    assert response.status_code == 503
    assert "db down" not in response.text and "ConnectionError" not in response.text
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    failures = [line for line in lines if line["logger"] == "chat_common.health"]
    assert len(failures) == 1
    assert failures[0]["level"] == "WARNING" and failures[0]["request_id"] == "ready-1"
    assert failures[0]["message"] == "readiness check db failed: ConnectionError: db down at 10.1.2.3:5432"


def test_production_refuses_wildcard_cors_and_debug() -> None:
    with pytest.raises(ValidationError, match="CORS_ORIGINS"):
        CommonSettings(environment="production", cors_origins=["*"])
    with pytest.raises(ValidationError, match="DEBUG"):
        CommonSettings(environment="production", cors_origins=["https://chat.example"], debug=True)
    assert CommonSettings(environment="production", cors_origins=["https://chat.example"]).is_production


async def test_every_log_line_is_json_with_the_request_id(capsys: pytest.CaptureFixture[str]) -> None:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app()), base_url="http://demo")
    await client.get("/conflict", headers={"X-Request-ID": "log-me-1"})
    logging.getLogger("demo").info("after the request")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert lines, "no JSON log lines"
    assert all({"time", "level", "logger", "service", "request_id", "message"} <= set(line) for line in lines)
    assert any(line["request_id"] == "log-me-1" for line in lines)
