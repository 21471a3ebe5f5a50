"""The caller's conversations: start, list, read, change (with If-Match), refresh, delete."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response, status

from app.core.deps import CharactersDep, ClockDep, ConversationsDep, CounterDep, PersonasDep
from app.models.conversation import Status
from app.schemas.conversation import ConversationCreate, ConversationPublic, ConversationUpdate, public
from app.services import conversations as conversation_service
from chat_common.auth import CurrentUser
from chat_common.locations import set_location
from chat_common.pagination import Page, PageDep

router = APIRouter(prefix="/conversations", tags=["conversations"])

_ENTITY_TAG = re.compile(r'^\s*"?(\d{1,18})"?\s*$')  # no W/: If-Match compares strongly
IfMatch = Annotated[
    str | None,
    Header(
        description='The version you read (its ETag, e.g. "3"): a stale one is refused with 412',
        examples=['"3"'],
    ),
]
Responses = dict[int | str, dict[str, Any]]
NOT_FOUND: Responses = {404: {"description": "No such conversation of yours (conversation_not_found)"}}
STALE: Responses = {412: {"description": "If-Match names a version the conversation is no longer at"}}
DOWNSTREAM: Responses = {
    503: {"description": "character-service or user-service is unavailable (named in details)"}
}


def if_match_versions(value: str | None) -> list[int] | None:
    """The versions an If-Match header names; None when absent or `*` (any version)."""
    if value is None or value.strip() == "*":
        return None
    versions = []
    for tag in value.split(","):
        match = _ENTITY_TAG.match(tag)
        if match:
            versions.append(int(match.group(1)))
    return versions  # nothing recognisable matches no version: 412


def _with_etag(response: Response, conversation: ConversationPublic) -> ConversationPublic:
    response.headers["ETag"] = f'"{conversation.version}"'
    return conversation


@router.post(
    "",
    response_model=ConversationPublic,
    status_code=status.HTTP_201_CREATED,
    responses={404: {"description": "Character or persona not found"}, **DOWNSTREAM},
)
async def create_conversation(
    conversations: ConversationsDep,
    data: ConversationCreate,
    user: CurrentUser,
    characters: CharactersDep,
    personas: PersonasDep,
    clock: ClockDep,
    response: Response,
    counter: CounterDep,
    request: Request,
) -> ConversationPublic:
    """Start a conversation with a character you may see, as one of your personas. `Location`: the new
    conversation."""
    conversation = await conversation_service.create(
        conversations,
        user_id=user.user_id,
        token=user.token,
        data=data,
        characters=characters,
        personas=personas,
        clock=clock,
    )
    assert conversation.id is not None
    counter.count_soon(conversation.id, conversation.character_id)
    set_location(request, response, "read_conversation", conversation_id=conversation.id)
    return _with_etag(response, public(conversation))


@router.get("", response_model=Page[ConversationPublic])
async def list_conversations(
    conversations: ConversationsDep,
    user: CurrentUser,
    page: PageDep,
    character_id: Annotated[uuid.UUID | None, Query(description="Only with this character")] = None,
    status_filter: Annotated[Status | None, Query(alias="status", description="active or archived")] = None,
) -> Page[ConversationPublic]:
    """Your conversations: pinned first, then the most recent activity."""
    rows, total = await conversation_service.list_owned(
        conversations,
        user.user_id,
        character_id=str(character_id) if character_id else None,
        status=status_filter,
        limit=page.limit,
        offset=page.offset,
    )
    return Page.of([public(row) for row in rows], total, page)


@router.get("/{conversation_id}", response_model=ConversationPublic, responses=NOT_FOUND)
async def read_conversation(
    conversations: ConversationsDep, conversation_id: str, user: CurrentUser, response: Response
) -> ConversationPublic:
    conversation = await conversation_service.get_owned(conversations, conversation_id, user.user_id)
    return _with_etag(response, public(conversation))


@router.patch(
    "/{conversation_id}", response_model=ConversationPublic, responses={**NOT_FOUND, **STALE, **DOWNSTREAM}
)
async def update_conversation(
    conversations: ConversationsDep,
    conversation_id: str,
    data: ConversationUpdate,
    user: CurrentUser,
    personas: PersonasDep,
    clock: ClockDep,
    response: Response,
    if_match: IfMatch = None,
) -> ConversationPublic:
    """Change the title, archive or pin it, or switch persona (copied again from user-service)."""
    conversation = await conversation_service.update(
        conversations,
        conversation_id=conversation_id,
        user_id=user.user_id,
        data=data,
        if_match=if_match_versions(if_match),
        personas=personas,
        clock=clock,
    )
    return _with_etag(response, public(conversation))


@router.post(
    "/{conversation_id}/refresh-character",
    response_model=ConversationPublic,
    responses={**NOT_FOUND, **STALE, **DOWNSTREAM},
)
async def refresh_character(
    conversations: ConversationsDep,
    conversation_id: str,
    user: CurrentUser,
    characters: CharactersDep,
    clock: ClockDep,
    response: Response,
    if_match: IfMatch = None,
) -> ConversationPublic:
    """Copy the character again after it was edited (name, avatar, greetings)."""
    conversation = await conversation_service.refresh_character(
        conversations,
        conversation_id=conversation_id,
        user_id=user.user_id,
        token=user.token,
        if_match=if_match_versions(if_match),
        characters=characters,
        clock=clock,
    )
    return _with_etag(response, public(conversation))


@router.delete("/{conversation_id}", status_code=status.HTTP_204_NO_CONTENT, responses={**NOT_FOUND, **STALE})
async def delete_conversation(
    conversation_id: str,
    user: CurrentUser,
    clock: ClockDep,
    conversations: ConversationsDep,
    if_match: IfMatch = None,
) -> Response:
    """Delete it: gone for you at once; message-service removes its messages."""
    await conversation_service.delete(
        conversations,
        conversation_id=conversation_id,
        user_id=user.user_id,
        if_match=if_match_versions(if_match),
        clock=clock,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
