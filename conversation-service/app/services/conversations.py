"""Conversation rules: who may see what, snapshots, optimistic concurrency, soft delete, activity."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

from app.clients.directories import CharacterDirectory, PersonaDirectory
from app.core.clock import Clock
from app.models import CharacterSnapshot, Conversation, PersonaSnapshot
from app.models.conversation import Status
from app.repositories.conversations import ConversationRepository
from app.schemas.conversation import (
    ActivityItem,
    ActivityOutcome,
    ActivityStatus,
    ConversationCreate,
    ConversationUpdate,
)
from chat_common.errors import AppError, ConflictError, NotFoundError
from chat_common.mongo import parse_object_id


class PreconditionFailedError(AppError):
    status_code, code = 412, "precondition_failed"


UNCOUNT_TRIES = 3  # planned updates of a deletion before it is taken id by id


def _not_found() -> NotFoundError:
    return NotFoundError("Conversation not found", code="conversation_not_found")


def conversation_oid(conversation_id: str) -> ObjectId:
    try:
        return parse_object_id(conversation_id, "Conversation")
    except NotFoundError:
        raise _not_found() from None


async def _persona(personas: PersonaDirectory, user_id: str, persona_id: Any) -> PersonaSnapshot:
    if persona_id is None:
        return await personas.default_persona(user_id)
    return await personas.persona(user_id, str(persona_id))


async def create(
    repository: ConversationRepository,
    *,
    user_id: str,
    token: str,
    data: ConversationCreate,
    characters: CharacterDirectory,
    personas: PersonaDirectory,
    clock: Clock,
) -> Conversation:
    """Check the character (as the caller sees it) and the persona, then store the conversation with
    their snapshots. Nothing is stored when either cannot be had."""
    # Two independent reads from two services: at once, so a start waits for the slower one only.
    character, persona = await asyncio.gather(
        characters.snapshot(str(data.character_id), token=token),
        _persona(personas, user_id, data.persona_id),
        return_exceptions=True,
    )
    for outcome in (character, persona):  # the character's error first: it is the likelier mistake
        if isinstance(outcome, BaseException):
            raise outcome
    assert isinstance(character, CharacterSnapshot) and isinstance(persona, PersonaSnapshot)
    now = clock.now()
    conversation = Conversation(
        user_id=user_id,
        character_id=str(data.character_id),
        title=data.title,
        character=character,
        persona=persona,
        last_activity_at=now,
        created_at=now,
        updated_at=now,
    )
    return await repository.insert(conversation)


async def get_owned(repository: ConversationRepository, conversation_id: str, user_id: str) -> Conversation:
    conversation = await repository.get_live(conversation_oid(conversation_id), user_id)
    if conversation is None:
        raise _not_found()
    return conversation


async def list_owned(
    repository: ConversationRepository,
    user_id: str,
    *,
    character_id: str | None,
    status: Status | None,
    limit: int,
    offset: int,
) -> tuple[list[Conversation], int]:
    return await repository.list_live(
        user_id, character_id=character_id, status=status, limit=limit, offset=offset
    )


def check_precondition(conversation: Conversation, if_match: list[int] | None) -> None:
    """412 when the client's If-Match names no version the conversation is at."""
    if if_match is not None and conversation.version not in if_match:
        raise PreconditionFailedError(
            f"The conversation changed: it is at version {conversation.version}",
            details={"version": conversation.version},
        )


async def _apply(
    repository: ConversationRepository,
    conversation: Conversation,
    changes: dict[str, Any],
    clock: Clock,
    *,
    if_match: list[int] | None,
) -> Conversation:
    """Apply `changes`. With If-Match, a compare-and-set on the version read: a concurrent change in
    between is a 412. Without it the client asked for no precondition, and the changes are values
    (not computed from what was read), so they apply to whatever version is current."""
    assert conversation.id is not None
    changes["updated_at"] = changes["changed_at"] = clock.now()
    version = None if if_match is None else conversation.version
    updated = await repository.compare_and_set(conversation.id, conversation.user_id, version, changes)
    if updated is not None:
        return updated
    current = await repository.get_live(conversation.id, conversation.user_id)
    if current is None:
        raise _not_found()
    raise PreconditionFailedError(
        f"The conversation changed while this request ran: it is at version {current.version}",
        details={"version": current.version},
    )


async def update(
    repository: ConversationRepository,
    *,
    conversation_id: str,
    user_id: str,
    data: ConversationUpdate,
    if_match: list[int] | None,
    personas: PersonaDirectory,
    clock: Clock,
) -> Conversation:
    conversation = await get_owned(repository, conversation_id, user_id)
    check_precondition(conversation, if_match)
    given = data.model_fields_set
    changes: dict[str, Any] = {}
    if "title" in given:
        changes["title"] = data.title
    if "archived" in given and data.archived is not None:
        changes["status"] = "archived" if data.archived else "active"
    if "pinned" in given and data.pinned is not None:
        changes["pinned"] = data.pinned
    if "persona_id" in given:
        persona = await _persona(personas, user_id, data.persona_id)
        changes["persona"] = persona
    if not changes:
        return conversation
    return await _apply(repository, conversation, changes, clock, if_match=if_match)


async def refresh_character(
    repository: ConversationRepository,
    *,
    conversation_id: str,
    user_id: str,
    token: str,
    if_match: list[int] | None,
    characters: CharacterDirectory,
    clock: Clock,
) -> Conversation:
    """Copy the character again (after its owner edited it), as the caller may see it now."""
    conversation = await get_owned(repository, conversation_id, user_id)
    check_precondition(conversation, if_match)
    character = await characters.snapshot(conversation.character_id, token=token)
    return await _apply(repository, conversation, {"character": character}, clock, if_match=if_match)


def deleted_key(at: datetime, conversation_id: ObjectId) -> str:
    return f"{int(at.timestamp() * 1000):013d}-{conversation_id}"


async def delete(
    repository: ConversationRepository,
    *,
    conversation_id: str,
    user_id: str,
    if_match: list[int] | None,
    clock: Clock,
) -> None:
    """Soft delete; with If-Match, only the version the client read (412 otherwise)."""
    oid = conversation_oid(conversation_id)
    version = None
    if if_match is not None:
        conversation = await get_owned(repository, conversation_id, user_id)
        check_precondition(conversation, if_match)
        version = conversation.version
    now = clock.now()
    if await repository.mark_deleted(oid, user_id, now, deleted_key(now, oid), version=version):
        return
    current = await repository.get_live(oid, user_id)
    if current is None:
        raise _not_found()
    raise PreconditionFailedError(
        f"The conversation changed while this request ran: it is at version {current.version}",
        details={"version": current.version},
    )


async def get_any(repository: ConversationRepository, conversation_id: str) -> Conversation:
    """A conversation for another service, deleted or not."""
    conversation = await repository.get(conversation_oid(conversation_id))
    if conversation is None:
        raise _not_found()
    return conversation


async def record_activity(
    repository: ConversationRepository,
    *,
    conversation_id: str,
    message_id: str,
    at: datetime | None,
    clock: Clock,
) -> tuple[Conversation, bool]:
    """Count a stored message once per message id and move the last-message time forward (to `at`, but
    never past now: a time in the future would keep the conversation on top of the list for good).
    A deleted conversation takes no more activity (409)."""
    oid = conversation_oid(conversation_id)
    counted = await repository.count_message(oid, message_id)
    if not counted:
        existing = await repository.get(oid)
        if existing is None:
            raise _not_found()
        if existing.deleted_at is not None:
            raise ConflictError("The conversation was deleted", code="conversation_deleted")
    now = clock.now()
    if counted or at is not None:  # a repeat without its time must not move the times to now
        await repository.advance_last_message(oid, min(at, now) if at is not None else now)
    return await get_any(repository, conversation_id), counted


async def forget_messages(
    repository: ConversationRepository, *, conversation_id: str, message_ids: list[str]
) -> tuple[Conversation, list[str]]:
    """Messages deleted at message-service: each taken out of `message_count` once if it was counted,
    and never counted afterwards, however often this is retried (deleted conversation or not: its
    count still reads). The conversation after, and the ids this call lowered the count for."""
    oid = conversation_oid(conversation_id)
    if await repository.uncount_all_at_once(oid, message_ids):  # the usual case: all counted
        return await get_any(repository, conversation_id), message_ids
    # One update planned from what the conversation holds (a greeting never counted, a retry): each
    # update costs more as the id lists grow. Id by id only while other calls keep changing them.
    for _ in range(UNCOUNT_TRIES):
        lowered = await repository.uncount_as_read(oid, message_ids)
        if lowered is not None:
            return await get_any(repository, conversation_id), lowered
    uncounted = [
        message_id for message_id in message_ids if await repository.uncount_message(oid, message_id)
    ]
    return await get_any(repository, conversation_id), uncounted


async def record_activities(
    repository: ConversationRepository, *, items: list[ActivityItem], clock: Clock
) -> list[ActivityOutcome]:
    """`record_activity` for many conversations at once (each at most once), answered per item: an
    unknown or deleted conversation is reported, not raised, so it never fails the others."""
    now = clock.now()
    return list(await asyncio.gather(*(_record_item(repository, item, now) for item in items)))


async def _record_item(
    repository: ConversationRepository, item: ActivityItem, now: datetime
) -> ActivityOutcome:
    """Count the item's messages once each and move the times forward to its `at` (never past now).
    Usually one update (two for a conversation's first messages); the exact per-id path when that
    changed nothing (a retry with some ids counted, an older `at`, a deleted or unknown conversation)."""

    def outcome(status: ActivityStatus, counted: list[str]) -> ActivityOutcome:
        return ActivityOutcome(
            conversation_id=item.conversation_id, status=status, counted_message_ids=counted
        )

    if not ObjectId.is_valid(item.conversation_id):
        return outcome("not_found", [])
    oid, at, ids = ObjectId(item.conversation_id), min(item.at, now), item.message_ids
    for first in (False, True):
        if await repository.count_all_at_once(oid, ids, at, first=first):
            return outcome("recorded", ids)
    counted = [message_id for message_id in ids if await repository.count_message(oid, message_id)]
    if not counted:
        existing = await repository.get(oid)
        if existing is None:
            return outcome("not_found", [])
        if existing.deleted_at is not None:
            return outcome("deleted", [])
    await repository.advance_last_message(oid, at)
    return outcome("recorded", counted)


async def deleted_feed(
    repository: ConversationRepository, *, since: str, limit: int, lag_seconds: float, clock: Clock
) -> tuple[list[Conversation], str]:
    """Deletions after the cursor `since`, oldest first, that are at least `lag_seconds` old."""
    until = f"{int((clock.now() - timedelta(seconds=lag_seconds)).timestamp() * 1000):013d}"
    items = await repository.deleted_after(since, until, limit)
    next_cursor = items[-1].deleted_key if items else since
    return items, next_cursor or since


async def changed_feed(
    repository: ConversationRepository, *, since: datetime, limit: int, clock: Clock
) -> tuple[list[str], datetime, bool]:
    """Ids of the conversations changed at or after `since` (PATCHed, character refreshed, deleted; a
    new one is cached nowhere yet), `until` (now: the next `since`, less an overlap) and whether that
    was all of them (False: more than `limit` changed). `until` is taken before reading, so a change
    stamped before it but written after the read is found by the next read, which overlaps it."""
    until = clock.now()
    ids = await repository.changed_since(since, limit + 1)
    return ids[:limit], until, len(ids) <= limit
