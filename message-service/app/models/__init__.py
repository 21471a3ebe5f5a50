"""MongoDB documents of message-service."""

from app.models.message import ConversationState, Generation, Message, Usage

DOCUMENTS = [Message, ConversationState]

__all__ = ["DOCUMENTS", "ConversationState", "Generation", "Message", "Usage"]
