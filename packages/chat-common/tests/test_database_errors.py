"""PostgreSQL errors become the client's 422 or a 503 naming PostgreSQL; the driver's text goes only
to the log line with the request id."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from chat_common.app import create_service_app
from chat_common.database import DatabaseSettings, SessionDep, create_engine, create_sessionmaker
from chat_common.embedded import free_port


def make_app(database_url: str) -> FastAPI:
    settings = DatabaseSettings(service_name="demo", database_url=database_url, db_pool_timeout=5.0)
    app = create_service_app(settings, title="demo", description="demo")
    app.state.sessionmaker = create_sessionmaker(create_engine(settings))

    @app.get("/echo")
    async def echo(value: str, session: SessionDep) -> dict[str, Any]:
        return {"value": (await session.execute(text("SELECT CAST(:v AS text)"), {"v": value})).scalar_one()}

    return app


def log_lines(capsys: pytest.CaptureFixture[str], logger: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return [line for line in lines if line["logger"] == logger]


async def test_bad_value_is_422_without_the_driver_text(
    postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app(postgres_url)), base_url="http://t")
    assert (await client.get("/echo", params={"value": "fine"})).json() == {"value": "fine"}
    response = await client.get("/echo", params={"value": "a\u0000b"}, headers={"X-Request-ID": "nul-1"})
    assert response.status_code == 422
    assert response.json() == {
        "error": {
            "code": "validation_error",
            "message": "A value in the request is out of range or not valid text",
            "details": None,
            "request_id": "nul-1",
        }
    }
    [line] = log_lines(capsys, "chat_common.database")
    assert line["level"] == "WARNING" and line["request_id"] == "nul-1"
    assert 'invalid byte sequence for encoding "UTF8": 0x00' in line["message"]


async def test_lost_database_is_503_without_the_driver_text(capsys: pytest.CaptureFixture[str]) -> None:
    dead = f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/nowhere"
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app(dead)), base_url="http://t")
    response = await client.get("/echo", params={"value": "x"}, headers={"X-Request-ID": "down-1"})
    assert response.status_code == 503
    assert response.json() == {
        "error": {
            "code": "dependency_unavailable",
            "message": "PostgreSQL is unavailable",
            "details": {"service": "postgres"},
            "request_id": "down-1",
        }
    }
    [line] = log_lines(capsys, "chat_common.database")
    assert line["level"] == "WARNING" and line["request_id"] == "down-1"
    assert line["message"].startswith("PostgreSQL is unavailable: ")
    assert "hunter2" not in line["message"]
