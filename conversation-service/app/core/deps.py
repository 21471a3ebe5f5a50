"""Request-scoped dependencies of conversation-service."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.clients.directories import CharacterDirectory, PersonaDirectory
from app.config import Settings
from app.core.clock import Clock
from app.repositories.conversations import ConversationRepository
from app.services.counters import CharacterCounter
from app.services.sessions import Stores


def _state(name: str):  # type: ignore[no-untyped-def]
    def dependency(request: Request):  # type: ignore[no-untyped-def]
        return getattr(request.app.state, name)

    return dependency


SettingsDep = Annotated[Settings, Depends(_state("settings"))]
ClockDep = Annotated[Clock, Depends(_state("clock"))]
CharactersDep = Annotated[CharacterDirectory, Depends(_state("characters"))]
PersonasDep = Annotated[PersonaDirectory, Depends(_state("personas"))]
CounterDep = Annotated[CharacterCounter, Depends(_state("character_counter"))]
ConversationsDep = Annotated[ConversationRepository, Depends(_state("conversations"))]
SessionStoresDep = Annotated[Stores, Depends(_state("session_stores"))]
