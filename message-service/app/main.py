"""message-service: the message tree, prompt building, generation jobs, credits, limits, analytics."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from app.api.v1 import analytics, conversations, messages
from app.clients.fleet import Fleet
from app.config import Settings, get_settings
from app.core.runtime import Runtime
from app.models import DOCUMENTS
from app.repositories.analytics import AnalyticsRepository
from app.repositories.live import Live
from app.repositories.messages import MessageRepository
from app.services import bookkeeping, conversation_cache, followups
from chat_common.app import create_service_app
from chat_common.auth import jwks_verifier
from chat_common.mongo import install_mongodb_error_handlers, open_mongodb
from chat_common.redis import install_redis_error_handlers, redis_client

FOLLOW_UP_DRAIN_SECONDS = 5.0  # the longest a shutdown waits to tell the follow-ups still waiting


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.token_verifier = jwks_verifier(settings)
        redis = redis_client(settings.redis_url)
        live = Live(
            redis, settings.redis_url, settings.redis_prefix, messages_per_minute=settings.messages_per_minute
        )
        fleet = Fleet(settings)
        app.state.readiness_checks["redis"] = live.ping
        async with open_mongodb(app, settings, DOCUMENTS):
            database = app.state.mongodb
            runtime = Runtime(
                settings, MessageRepository(database), live, fleet, AnalyticsRepository(database)
            )
            app.state.runtime = runtime
            sweeper = asyncio.ensure_future(bookkeeping.sweep_forever(runtime))
            tell = functools.partial(followups.tell, runtime)
            loops = [sweeper, asyncio.ensure_future(runtime.followups.run(tell))]
            if conversation_cache.enabled(runtime):
                loops.append(asyncio.ensure_future(conversation_cache.follow_changes(runtime)))
            try:
                yield
            finally:
                for loop in loops:
                    loop.cancel()
                # Jobs still running finish on their own time elsewhere: their lease expires and the
                # sweeper of another replica (or of the next start) fails them and frees their credits.
                for task in list(runtime.background):
                    task.cancel()
                for task in [*loops, *runtime.background]:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                # What still waits for a batch, told now (best effort: the sweeper covers the rest).
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(runtime.followups.drain(tell), FOLLOW_UP_DRAIN_SECONDS)
                await fleet.aclose()
                await redis.aclose()

    app = create_service_app(
        settings,
        title="message-service",
        description="The message tree, prompt building, resumable generation jobs, credits and analytics.",
        lifespan=lifespan,
    )
    install_mongodb_error_handlers(app)
    install_redis_error_handlers(app)
    api = APIRouter(prefix="/api/v1")
    for module in (conversations, messages, analytics):
        api.include_router(module.router)
    app.include_router(api)
    return app


app = create_app()
