"""character-service: characters, their metadata, search, and Character Card V2 import/export."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from app.api.v1 import cards, characters, internal, tags
from app.config import SERVICE_DIR, Settings, get_settings
from chat_common.app import create_service_app
from chat_common.auth import jwks_verifier
from chat_common.database import open_database


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.token_verifier = jwks_verifier(settings)
        async with open_database(app, SERVICE_DIR, settings):
            yield

    app = create_service_app(
        settings,
        title="character-service",
        description="Characters: CRUD, visibility, search, metadata, Character Card V2 import and export.",
        lifespan=lifespan,
    )
    api = APIRouter(prefix="/api/v1")
    # cards before characters: /characters/import must not be taken for a character id
    for module in (cards, characters, tags, internal):
        api.include_router(module.router)
    app.include_router(api)
    return app


app = create_app()
