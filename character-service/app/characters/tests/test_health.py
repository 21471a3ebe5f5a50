"""Liveness, readiness, metrics, docs, and the error shape for unknown routes."""

from __future__ import annotations

from fastapi import FastAPI
from httpx import AsyncClient

from app.characters.tests.conftest import error_code
from chat_common.database import DatabaseSettings, create_engine, create_sessionmaker
from chat_common.embedded import free_port
from chat_common.testing import TokenMint


async def test_health_ready_metrics_docs(client: AsyncClient) -> None:
    assert (await client.get("/health")).status_code == 200
    ready = await client.get("/ready")
    assert ready.status_code == 200 and ready.json()["checks"] == {"postgres": "ok"}
    assert (await client.get("/metrics")).status_code == 200
    assert "/api/v1/characters/import" in (await client.get("/openapi.json")).json()["paths"]


async def test_unknown_route_is_404_in_the_shared_shape(client: AsyncClient) -> None:
    response = await client.get("/api/v1/nowhere")
    assert response.status_code == 404 and error_code(response) == "not_found"


async def test_postgres_down_is_503_naming_it(
    app: FastAPI, client: AsyncClient, token_mint: TokenMint
) -> None:
    headers = {"Authorization": f"Bearer {token_mint.user()}"}
    dead = DatabaseSettings(database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    saved = app.state.read_sessionmaker
    app.state.read_sessionmaker = create_sessionmaker(create_engine(dead))
    try:
        response = await client.get("/api/v1/characters", headers=headers)
        ready = await client.get("/ready")
    finally:
        app.state.read_sessionmaker = saved
    assert response.status_code == 503 and error_code(response) == "dependency_unavailable"
    assert response.json()["error"]["details"] == {"service": "postgres"}
    assert ready.status_code == 503
