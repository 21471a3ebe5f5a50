"""Mock mode (MOCK_SERVICES=true): a built-in character catalogue and personas, so the service runs
and can be tried with nothing but MongoDB. Production refuses it (config)."""

from __future__ import annotations

from app.models import CharacterSnapshot, PersonaSnapshot
from chat_common.errors import NotFoundError

MOCK_CHARACTERS: dict[str, CharacterSnapshot] = {
    "00000000-0000-4000-8000-000000000001": CharacterSnapshot(
        name="Captain Mira",
        greeting="Welcome aboard the Skylark! Mind the rigging.",
        alternate_greetings=["Ah, a stowaway? Grab a rope, then."],
    ),
    "00000000-0000-4000-8000-000000000002": CharacterSnapshot(
        name="Professor Quill",
        greeting="Sit down, sit down. Today's lecture is on dragons.",
    ),
    "00000000-0000-4000-8000-000000000003": CharacterSnapshot(
        name="Ада",
        greeting="Привет! О чём поговорим?",
        alternate_greetings=["Здравствуй, путник.", "こんにちは!"],
    ),
}
MOCK_DISPLAY_NAME = "Mock User"


class MockCharacterDirectory:
    async def snapshot(self, character_id: str, *, token: str) -> CharacterSnapshot:
        character = MOCK_CHARACTERS.get(character_id)
        if character is None:
            raise NotFoundError("Character not found", code="character_not_found")
        return character.model_copy(deep=True)

    async def count_conversation(self, character_id: str, *, key: str) -> None:
        return None  # the mock catalogue keeps no counters


class MockPersonaDirectory:
    """Mock users have no personas: they appear under one display name."""

    async def persona(self, user_id: str, persona_id: str) -> PersonaSnapshot:
        raise NotFoundError("Persona not found (mock mode has no personas)", code="persona_not_found")

    async def default_persona(self, user_id: str) -> PersonaSnapshot:
        return PersonaSnapshot(name=MOCK_DISPLAY_NAME)
