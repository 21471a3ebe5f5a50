"""conversation-service: conversations with a character (persona snapshot) and chat sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from app.api.v1 import conversations, internal, mock, sessions
from app.clients.http import FleetClients, HttpCharacterDirectory, HttpPersonaDirectory
from app.clients.mock import MockCharacterDirectory, MockPersonaDirectory
from app.config import Settings, get_settings
from app.core.clock import Clock
from app.core.mock_auth import MockAuth
from app.models import DOCUMENTS
from app.repositories.conversations import ConversationRepository
from app.repositories.sessions import SessionRepository
from app.services.counters import CharacterCounter
from app.services.sessions import Stores
from chat_common.app import create_service_app
from chat_common.auth import jwks_verifier
from chat_common.mongo import install_mongodb_error_handlers, open_mongodb


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        fleet = None
        if settings.mock_services:
            app.state.mock_auth = MockAuth(settings)
            app.state.token_verifier = app.state.mock_auth.verifier()
            app.state.characters, app.state.personas = MockCharacterDirectory(), MockPersonaDirectory()
        else:
            fleet = FleetClients(settings)
            app.state.token_verifier = jwks_verifier(settings)
            app.state.characters = HttpCharacterDirectory(fleet)
            app.state.personas = HttpPersonaDirectory(fleet)
        async with open_mongodb(app, settings, DOCUMENTS):
            app.state.conversations = ConversationRepository(app.state.mongodb)
            app.state.session_stores = Stores(SessionRepository(app.state.mongodb), app.state.conversations)
            counter = CharacterCounter(
                app.state.characters,
                app.state.conversations,
                app.state.clock,
                app.state.metrics_registry,
                retry_interval=settings.counter_retry_interval_seconds,
            )
            app.state.character_counter = counter
            counter.start()
            try:
                yield
            finally:
                await counter.stop()
                if fleet is not None:
                    await fleet.aclose()

    app = create_service_app(
        settings,
        title="conversation-service",
        description="Conversations with a character (character and persona snapshots) and chat sessions.",
        lifespan=lifespan,
    )
    app.state.clock = Clock()
    install_mongodb_error_handlers(app)
    api = APIRouter(prefix="/api/v1")
    for module in (conversations, sessions, internal):
        api.include_router(module.router)
    if settings.mock_services:
        api.include_router(mock.router)
    app.include_router(api)
    return app


app = create_app()
