"""Whose is what: the conversation (from conversation-service, cached in Redis until its changes feed
names it: services/conversation_cache) and its character (from character-service, cached briefly)."""

from __future__ import annotations

from typing import Any

from app.core.runtime import Runtime
from app.services import conversation_cache
from chat_common.errors import NotFoundError


def _gone() -> NotFoundError:
    return NotFoundError("Conversation not found", code="conversation_not_found")


async def conversation(rt: Runtime, conversation_id: str, user_id: str) -> dict[str, Any]:
    """The user's live conversation, else 404 (someone else's, deleted, or unknown alike)."""
    if not _looks_like_object_id(conversation_id):
        raise _gone()
    found = await conversation_cache.read(rt, conversation_id)
    if found.get("user_id") != user_id or found.get("deleted"):
        raise _gone()
    return found


async def character(rt: Runtime, character_id: str) -> dict[str, Any]:
    found: dict[str, Any] | None = await rt.live.cached("character", character_id)
    if found is None:
        found = await rt.fleet.character(character_id)
        await rt.live.cache("character", character_id, found, rt.settings.character_cache_seconds)
    return found


def _looks_like_object_id(value: str) -> bool:
    return len(value) == 24 and all(c in "0123456789abcdef" for c in value)
