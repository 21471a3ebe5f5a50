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
    series = 'http_requests_total{handler="/api/v1/auth/token",method="POST",status="4xx"}'

    async def failed_logins() -> float:
        text = (await client.get("/metrics")).text
        return next((float(line.split()[-1]) for line in text.splitlines() if line.startswith(series)), 0.0)

    before = await failed_logins()
    await client.post("/api/v1/auth/token", data={"username": "nobody-m", "password": "Wrong-pass-1"})
    assert await failed_logins() == before + 1
    assert "http_request_duration_seconds_bucket" in (await client.get("/metrics")).text
    assert (await client.get("/docs")).status_code == 200
    schema = (await client.get("/openapi.json")).json()
    assert "/api/v1/auth/token" in schema["paths"]
