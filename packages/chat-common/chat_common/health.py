"""`/health` (liveness, no dependencies) and `/ready` (the service's own backends)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

ReadinessCheck = Callable[[], Awaitable[object]]

logger = logging.getLogger(__name__)


def health_router(service: str) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/health", summary="Liveness: the process answers")
    async def health() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @router.get("/ready", summary="Readiness: the service's own backends answer")
    async def ready(request: Request) -> JSONResponse:
        checks: dict[str, ReadinessCheck] = getattr(request.app.state, "readiness_checks", {})
        results: dict[str, str] = {}
        healthy = True
        for name, check in checks.items():
            try:
                await asyncio.wait_for(check(), timeout=3.0)
                results[name] = "ok"
            except Exception as exc:  # any failure means not ready
                # The body names the check; why it failed (hosts, driver text) goes to the log only.
                healthy = False
                results[name] = "error"
                logger.warning("readiness check %s failed: %s: %s", name, exc.__class__.__name__, exc)
        body = {"status": "ready" if healthy else "not_ready", "service": service, "checks": results}
        return JSONResponse(body, status_code=200 if healthy else 503)

    return router
