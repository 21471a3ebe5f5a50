"""Liveness, readiness, metrics, docs, and the error shape for unknown routes."""

from __future__ import annotations

from httpx import AsyncClient

from app.characters.tests.conftest import error_code


async def test_health_ready_metrics_docs(client: AsyncClient) -> None:
    assert (await client.get("/health")).status_code == 200
    ready = await client.get("/ready")
    assert ready.status_code == 200 and ready.json()["checks"] == {"postgres": "ok"}
    assert (await client.get("/metrics")).status_code == 200
    assert "/api/v1/characters/import" in (await client.get("/openapi.json")).json()["paths"]


async def test_unknown_route_is_404_in_the_shared_shape(client: AsyncClient) -> None:
    response = await client.get("/api/v1/nowhere")
    assert response.status_code == 404 and error_code(response) == "not_found"
