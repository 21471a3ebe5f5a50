"""Endpoints for the other services (service token with `characters:counters`)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends

from app.schemas.character import CounterChange, CounterChangeResults, CounterChanges, Counters
from app.services import characters as character_service
from chat_common.auth import Principal, require_scopes
from chat_common.database import SessionDep

router = APIRouter(prefix="/internal", tags=["internal"])


@router.post("/characters/counters", response_model=CounterChangeResults)
async def change_counters_batch(
    batch: CounterChanges,
    session: SessionDep,
    _: Annotated[Principal, Depends(require_scopes("characters:counters"))],
) -> CounterChangeResults:
    """Many keyed counter changes in one transaction (message-service's follow-up batches), each
    applied at most once per character and key, answered per change: an unknown character or a key
    reused with other amounts is reported in its item and does not fail the others."""
    items = await character_service.change_counters_batch(session, batch.changes)
    return CounterChangeResults(items=items)


@router.post("/characters/{character_id}/counters", response_model=Counters)
async def change_counters(
    character_id: uuid.UUID,
    change: CounterChange,
    session: SessionDep,
    _: Annotated[Principal, Depends(require_scopes("characters:counters"))],
) -> Counters:
    """Add to the conversation and message counters (conversation- and message-service); with an
    `idempotency_key` a retried change is counted once."""
    conversations, messages = await character_service.change_counters(
        session,
        character_id,
        conversations=change.conversations,
        messages=change.messages,
        idempotency_key=change.idempotency_key,
    )
    return Counters(id=character_id, conversation_count=conversations, message_count=messages)
