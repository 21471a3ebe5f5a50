"""SQLAlchemy models of character-service, all in the `characters` schema."""

from app.models.base import SCHEMA, Base
from app.models.character import Character, CharacterAvatar

__all__ = ["SCHEMA", "Base", "Character", "CharacterAvatar"]
