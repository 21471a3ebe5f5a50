"""MongoDB documents of message-service."""

from app.models.message import ConversationState, Deletion, Generation, Message, Usage

DOCUMENTS = [Message, ConversationState, Deletion]

__all__ = ["DOCUMENTS", "ConversationState", "Deletion", "Generation", "Message", "Usage"]
