"""llm-service: the one door to LM Studio (OpenAI-compatible, queued, cancellable)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import APIRouter, FastAPI

from app.api.v1 import generation, models, status
from app.config import Settings, get_settings
from app.services.gate import ConcurrencyGate
from app.services.generation import GenerationService
from app.services.llm import LLMService
from app.services.metering import CostModel, Meter
from chat_common.app import create_service_app
from chat_common.auth import jwks_verifier
from chat_common.credits import CreditsClient
from chat_common.transport import PooledTransport
from lmstudio_client import LMStudioClient, Timeouts

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connections = max(settings.max_concurrency * 2, 10)
        client = LMStudioClient(
            settings.lmstudio_base_url,
            api_key=settings.lmstudio_api_key.get_secret_value() if settings.lmstudio_api_key else None,
            timeouts=Timeouts(
                connect=settings.connect_timeout_seconds,
                first_token=settings.first_token_timeout_seconds,
                idle=settings.idle_timeout_seconds,
                total=settings.total_timeout_seconds,
                models=settings.models_timeout_seconds,
                load=settings.load_timeout_seconds,
            ),
            max_connections=connections,
            transport=PooledTransport(limits=httpx.Limits(max_connections=connections)),
        )
        gate = ConcurrencyGate(
            settings.max_concurrency,
            settings.max_queue,
            queue_timeout=settings.queue_timeout_seconds,
            retry_after=settings.retry_after_seconds,
        )
        credits = CreditsClient.connect(
            settings.user_service_url,
            caller="llm-service",
            client_id=settings.llm_service_client_id,
            client_secret=settings.llm_service_client_secret.get_secret_value(),
            timeout=settings.credits_timeout_seconds,
            connect_timeout=settings.connect_timeout_seconds,
        )
        if settings.reservation_ttl_uncapped > settings.reservation_ttl_seconds:
            logger.warning(
                "credit reservations are held %ss, less than the %ss a call may take (queue, generation "
                "and settling): raise CREDITS_MAX_RESERVATION_SECONDS (and user-service's "
                "MAX_RESERVATION_TTL_SECONDS) or a long call's credits expire unpaid",
                settings.reservation_ttl_seconds,
                settings.reservation_ttl_uncapped,
            )
        meter = Meter(
            credits, CostModel.from_settings(settings), reservation_ttl=settings.reservation_ttl_seconds
        )
        app.state.llm = LLMService(client, gate, settings)
        app.state.generation = GenerationService(app.state.llm, meter)
        app.state.token_verifier = jwks_verifier(settings)
        try:
            yield
        finally:
            await meter.drain()  # bills still being settled
            await credits.aclose()
            await client.aclose()

    app = create_service_app(
        settings,
        title="llm-service",
        description="OpenAI-compatible door to LM Studio: models, chat, completions, embeddings.",
        lifespan=lifespan,
    )
    api = APIRouter(prefix="/api/v1")
    for module in (models, generation, status):
        api.include_router(module.router)
    app.include_router(api)
    return app


app = create_app()
