"""What conversation-service needs from the rest of the fleet: characters and personas.

Two implementations of each: over HTTP (character-service, user-service) and built in (mock mode).
"""

from __future__ import annotations

from typing import Protocol

from app.models import CharacterSnapshot, PersonaSnapshot


class CharacterGoneError(Exception):
    """The character no longer exists (deleted or unknown): its counter cannot be changed, ever."""


class CharacterDirectory(Protocol):
    async def snapshot(self, character_id: str, *, token: str) -> CharacterSnapshot:
        """The character as the caller (whose token this is) may see it; 404 when it may not."""
        ...

    async def count_conversation(self, character_id: str, *, key: str) -> None:
        """Add one to the character's conversation counter, once per `key` however often retried;
        CharacterGoneError when the character is gone."""
        ...


class PersonaDirectory(Protocol):
    async def persona(self, user_id: str, persona_id: str) -> PersonaSnapshot:
        """The user's persona; 404 when the user has no such persona."""
        ...

    async def default_persona(self, user_id: str) -> PersonaSnapshot:
        """The user's default persona, else the user's display name alone (a snapshot with no id)."""
        ...
