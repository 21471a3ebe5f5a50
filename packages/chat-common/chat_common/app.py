"""Builds a FastAPI app with everything the fleet shares: request ids, errors, health, metrics."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_fastapi_instrumentator import Instrumentator, metrics

from chat_common.auth import TOKEN_PATH
from chat_common.errors import install_error_handlers
from chat_common.health import health_router
from chat_common.logging import configure_logging
from chat_common.middleware import BodyLimitsMiddleware, TrailingSlashMiddleware, valid_request_id
from chat_common.openapi import ERROR_RESPONSES, install_openapi
from chat_common.settings import CommonSettings

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def create_service_app(
    settings: CommonSettings,
    *,
    title: str,
    description: str,
    lifespan: Lifespan | None = None,
    version: str = "1.0.0",
    token_url: str | None = None,
) -> FastAPI:
    """A service's FastAPI app with the fleet's middleware, handlers, `/health`, `/ready`, `/metrics`.

    Its OpenAPI document sends Swagger's Authorize button to `token_url`: by default user-service's
    token endpoint at `USER_SERVICE_PUBLIC_URL` (user-service itself passes its own path). A path
    answers with or without a trailing slash, never with a redirect.
    `/docs` (Swagger UI, with its OAuth2 redirect page) and `/redoc` load their JavaScript, CSS and
    icon from the service itself (fastapi-offline ships them), not from a CDN: they work offline."""
    configure_logging(settings.service_name, settings.log_level, settings.json_logs)
    app = FastAPIOffline(
        title=title,
        description=description,
        version=version,
        lifespan=lifespan,
        debug=settings.debug,
        responses=ERROR_RESPONSES,
        redirect_slashes=False,
        # Swagger UI's validator badge would load an image from validator.swagger.io
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.state.settings = settings
    app.state.readiness_checks = {}
    install_error_handlers(app)
    install_openapi(app, token_url=token_url or settings.user_service_public_url.rstrip("/") + TOKEN_PATH)
    app.add_middleware(TrailingSlashMiddleware)
    app.add_middleware(BodyLimitsMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(CorrelationIdMiddleware, validator=valid_request_id)
    app.include_router(health_router(settings.service_name))
    # Request counts and latency by route, method and status class: the RED metrics. The
    # instrumentator's default set (request/response sizes, a second histogram) costs ~20% of a
    # small request's CPU, measured with bench/loadgen.py against a hello-world.
    # Each app has its own registry, so that two apps in one process (tests) both record.
    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    app.state.metrics_registry = registry  # for a service's own metrics
    instrumentator = Instrumentator(
        excluded_handlers=["/metrics", "/health"], should_group_status_codes=True, registry=registry
    )
    instrumentator.add(metrics.requests(registry=registry))
    instrumentator.add(metrics.latency(buckets=LATENCY_BUCKETS, registry=registry))
    instrumentator.instrument(app).expose(app, include_in_schema=False)
    return app
