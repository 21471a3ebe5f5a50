"""Endpoints for the other services (service tokens only): read, activity (one or a batch), messages
deleted, deleted and changes feeds."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.core.deps import ClockDep, ConversationsDep, SettingsDep
from app.schemas.conversation import (
    ActivityBatch,
    ActivityBatchResult,
    ActivityCreate,
    ActivityResult,
    ChangedConversations,
    ConversationInternal,
    DeletedConversation,
    DeletedFeed,
    DeletedMessages,
    DeletedMessagesResult,
    internal,
)
from app.services import conversations as conversation_service
from chat_common.auth import Principal, require_scopes
from chat_common.mongo import from_millis, to_millis
from chat_common.pagination import MAX_LIMIT

router = APIRouter(prefix="/internal/conversations", tags=["internal"])

Reader = Annotated[Principal, Depends(require_scopes("conversations:read"))]
Writer = Annotated[Principal, Depends(require_scopes("conversations:write"))]
CURSOR = re.compile(r"^(\d{13}(-[0-9a-f]{24})?)?$")
CHANGES_LIMIT = 1000


@router.get("/deleted", response_model=DeletedFeed)
async def deleted_conversations(
    conversations: ConversationsDep,
    _: Reader,
    settings: SettingsDep,
    clock: ClockDep,
    since: Annotated[
        str, Query(max_length=38, pattern=CURSOR.pattern, description="next_cursor of the last read")
    ] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = MAX_LIMIT,
) -> DeletedFeed:
    """Conversations deleted after `since`, oldest first: message-service purges their messages."""
    items, next_cursor = await conversation_service.deleted_feed(
        conversations, since=since, limit=limit, lag_seconds=settings.deleted_feed_lag_seconds, clock=clock
    )
    return DeletedFeed(
        items=[
            DeletedConversation(
                id=str(c.id), user_id=c.user_id, character_id=c.character_id, deleted_at=c.deleted_at
            )
            for c in items
            if c.deleted_at is not None
        ],
        next_cursor=next_cursor,
    )


@router.post("/activity", response_model=ActivityBatchResult)
async def record_activities(
    conversations: ConversationsDep, batch: ActivityBatch, _: Writer, clock: ClockDep
) -> ActivityBatchResult:
    """Messages stored in several conversations: each counted once per message id, however often this
    is retried, answered per conversation (an unknown or deleted one does not fail the others)."""
    items = await conversation_service.record_activities(conversations, items=batch.items, clock=clock)
    return ActivityBatchResult(items=items)


@router.get("/changed", response_model=ChangedConversations)
async def changed_conversations(
    conversations: ConversationsDep,
    _: Reader,
    clock: ClockDep,
    since: Annotated[int, Query(ge=0, le=10**13 - 1, description="Epoch ms: `until` of the last read")],
    limit: Annotated[int, Query(ge=1, le=CHANGES_LIMIT)] = CHANGES_LIMIT,
) -> ChangedConversations:
    """Conversations whose cached copies are stale: changed (PATCHed, character refreshed, deleted) at
    or after `since`. Counting messages is not a change."""
    ids, until, complete = await conversation_service.changed_feed(
        conversations, since=from_millis(since), limit=limit, clock=clock
    )
    return ChangedConversations(ids=ids, until=to_millis(until), complete=complete)


@router.get("/{conversation_id}", response_model=ConversationInternal)
async def read_conversation(
    conversation_id: str, _: Reader, conversations: ConversationsDep
) -> ConversationInternal:
    """Owner, character, snapshots and counters, with `deleted` (a deleted one still reads)."""
    return internal(await conversation_service.get_any(conversations, conversation_id))


@router.post("/{conversation_id}/activity", response_model=ActivityResult)
async def record_activity(
    conversations: ConversationsDep,
    conversation_id: str,
    activity: ActivityCreate,
    _: Writer,
    clock: ClockDep,
) -> ActivityResult:
    """A message was stored: counted once per message id, however often this is retried."""
    conversation, counted = await conversation_service.record_activity(
        conversations,
        conversation_id=conversation_id,
        message_id=activity.message_id,
        at=activity.at,
        clock=clock,
    )
    return ActivityResult(
        conversation_id=conversation_id,
        message_count=conversation.message_count,
        last_message_at=conversation.last_message_at,
        counted=counted,
    )


@router.post("/{conversation_id}/deleted-messages", response_model=DeletedMessagesResult)
async def forget_messages(
    conversations: ConversationsDep, conversation_id: str, deleted: DeletedMessages, _: Writer
) -> DeletedMessagesResult:
    """Messages deleted: each counted one taken out of `message_count` once, and none counted again by
    a later activity, however often this is retried (in any order with the activity calls)."""
    conversation, uncounted = await conversation_service.forget_messages(
        conversations, conversation_id=conversation_id, message_ids=deleted.message_ids
    )
    return DeletedMessagesResult(
        conversation_id=conversation_id,
        message_count=conversation.message_count,
        uncounted_message_ids=uncounted,
    )
