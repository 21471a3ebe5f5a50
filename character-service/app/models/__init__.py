"""SQLAlchemy models of character-service, all in the `characters` schema."""

from app.models.base import SCHEMA, Base
from app.models.character import AppliedCounterChange, Character, CharacterAvatar

__all__ = ["SCHEMA", "AppliedCounterChange", "Base", "Character", "CharacterAvatar"]
