"""MongoDB documents of conversation-service."""

from app.models.conversation import CharacterSnapshot, Conversation, PersonaSnapshot
from app.models.session import ChatSession

DOCUMENTS = [Conversation, ChatSession]

__all__ = ["DOCUMENTS", "CharacterSnapshot", "ChatSession", "Conversation", "PersonaSnapshot"]
