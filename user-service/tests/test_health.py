"""Liveness, readiness, metrics and docs."""

from __future__ import annotations

from httpx import AsyncClient


async def test_health_and_ready(client: AsyncClient) -> None:
    assert (await client.get("/health")).json()["status"] == "ok"
    ready = await client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok"}


async def test_metrics_and_docs(client: AsyncClient) -> None:
    await client.get("/health")
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert 'http_requests_total{handler="/api/v1/auth/token"' not in metrics.text
    await client.post("/api/v1/auth/token", data={"username": "nobody-m", "password": "Wrong-pass-1"})
    metrics_text = (await client.get("/metrics")).text
    assert 'http_requests_total{handler="/api/v1/auth/token",method="POST",status="4xx"}' in metrics_text
    assert "http_request_duration_seconds_bucket" in metrics_text
    assert (await client.get("/docs")).status_code == 200
    schema = (await client.get("/openapi.json")).json()
    assert "/api/v1/auth/token" in schema["paths"]
