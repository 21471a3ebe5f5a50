"""Character rules: who sees and changes what, catalogue, metadata, counters, card import/export."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.models import AppliedCounterChange, Character
from app.repositories import characters as repo
from app.repositories.characters import CatalogueQuery
from app.schemas.character import (
    CharacterCreate,
    CharacterUpdate,
    CounterChangeResult,
    CounterChangeStatus,
    KeyedCounterChange,
)
from app.services.cards import ImportedCard
from chat_common.auth import Principal
from chat_common.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    PayloadTooLargeError,
    UnprocessableError,
)
from chat_common.validation import NUL_MESSAGE, contains_nul

READ_PRIVATE_SCOPE = "characters:read_private"


def _owner_or_admin(caller: Principal, character: Character) -> bool:
    return caller.is_admin or str(character.owner_id) == caller.subject


def _fields(data: CharacterCreate | CharacterUpdate, *, partial: bool) -> dict[str, Any]:
    values = data.model_dump(exclude_unset=partial)
    if "metadata" in values:
        values["meta"] = values.pop("metadata")
    if partial:  # a PATCH with `null` for a non-nullable field leaves it unchanged
        values = {k: v for k, v in values.items() if v is not None or k in ("avatar_url", "character_book")}
    return values


def check_metadata_size(metadata: dict[str, Any], limit: int) -> None:
    size = len(json.dumps(metadata, ensure_ascii=False).encode())
    if size > limit:
        raise PayloadTooLargeError(
            f"metadata is {size} bytes; the limit is {limit}", code="metadata_too_large"
        )


async def get_visible(session: AsyncSession, caller: Principal, character_id: uuid.UUID) -> Character:
    """A private character is invisible (404) to every user but its owner and admins; a service
    reads it only with the `characters:read_private` scope (403 without)."""
    character = await repo.get(session, character_id)
    if character is None:
        raise NotFoundError("Character not found")
    if character.visibility == "private" and not _owner_or_admin(caller, character):
        if not caller.is_service:
            raise NotFoundError("Character not found")
        if READ_PRIVATE_SCOPE not in caller.scopes:
            raise ForbiddenError(f"Missing scope(s): {READ_PRIVATE_SCOPE}")
    return character


async def get_editable(session: AsyncSession, caller: Principal, character_id: uuid.UUID) -> Character:
    character = await get_visible(session, caller, character_id)
    if not _owner_or_admin(caller, character):
        raise ForbiddenError("Only the owner or an admin can change this character")
    return character


async def create(
    session: AsyncSession, caller: Principal, data: CharacterCreate, *, metadata_limit: int
) -> Character:
    check_metadata_size(data.metadata, metadata_limit)
    character = Character(owner_id=uuid.UUID(caller.subject), **_fields(data, partial=False))
    await repo.add(session, character)
    await session.commit()
    return character


async def update(
    session: AsyncSession,
    caller: Principal,
    character_id: uuid.UUID,
    data: CharacterCreate | CharacterUpdate,
    *,
    partial: bool,
    metadata_limit: int,
) -> Character:
    """PATCH changes the fields given; PUT replaces every field (omitted ones take defaults)."""
    character = await get_editable(session, caller, character_id)
    values = _fields(data, partial=partial)
    if "meta" in values:
        check_metadata_size(values["meta"], metadata_limit)
    for name, value in values.items():
        setattr(character, name, value)
    character.version += 1
    await session.commit()
    return character


async def delete(session: AsyncSession, caller: Principal, character_id: uuid.UUID) -> None:
    character = await get_editable(session, caller, character_id)
    await repo.soft_delete(session, character)
    await session.commit()


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, `null` removes a key."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


async def set_metadata(
    session: AsyncSession,
    caller: Principal,
    character_id: uuid.UUID,
    metadata: Any,
    *,
    merge: bool,
    limit: int,
) -> dict[str, Any]:
    character = await get_editable(session, caller, character_id)
    new = merge_patch(character.meta, metadata) if merge else metadata
    if not isinstance(new, dict):
        raise UnprocessableError("metadata must be a JSON object")
    if contains_nul(new):
        raise UnprocessableError(NUL_MESSAGE)
    check_metadata_size(new, limit)
    character.meta = new
    character.version += 1
    await session.commit()
    return new


async def catalogue(
    session: AsyncSession,
    caller: Principal,
    *,
    q: str | None,
    tags: list[str],
    creator: str | None,
    owner_id: uuid.UUID | None,
    mine: bool,
    sort: str | None,
    limit: int,
    offset: int,
) -> tuple[list[Any], int]:
    """Characters matching `q`, all of `tags`, `creator` and the owner; by relevance when searching,
    else newest first, unless `sort` says otherwise. Only public ones, but for the caller's own (`mine`,
    or `owner_id` the caller's id), which are listed whatever their visibility."""
    if q is not None and repo.prefix_tsquery(q) is None:
        raise UnprocessableError("q must contain at least one letter or digit")
    if mine:
        if caller.is_service:
            raise ForbiddenError("mine=true lists a user's own characters: it needs a user's token")
        if owner_id is not None and str(owner_id) != caller.subject:
            raise UnprocessableError(
                "mine=true and an owner_id other than the caller's contradict each other",
                details={"field": "owner_id"},
            )
        owner_id = uuid.UUID(caller.subject)
    own = owner_id is not None and not caller.is_service and str(owner_id) == caller.subject
    query = CatalogueQuery(
        q=q,
        tags=tags,
        creator=creator,
        owner_id=owner_id,
        public_only=not own,
        sort=sort or ("relevance" if q else "newest"),
        limit=limit,
        offset=offset,
    )
    return await repo.catalogue(session, query)


async def owned_by(
    session: AsyncSession, owner_id: uuid.UUID, *, sort: str, limit: int, offset: int
) -> tuple[list[Any], int]:
    """Every character of `owner_id`, whatever its visibility."""
    query = CatalogueQuery(
        q=None,
        tags=[],
        creator=None,
        owner_id=owner_id,
        public_only=False,
        sort=sort,
        limit=limit,
        offset=offset,
    )
    return await repo.catalogue(session, query)


async def change_counters(
    session: AsyncSession,
    character_id: uuid.UUID,
    *,
    conversations: int,
    messages: int,
    idempotency_key: str | None = None,
) -> tuple[int, int]:
    """Add to the counters. With `idempotency_key` the change is applied at most once per character
    and key: the key is recorded in the same transaction as the increment, and a repeat returns the
    current counters (409 when it asks for other amounts)."""
    if idempotency_key is not None and not await repo.record_counter_change(
        session, character_id, idempotency_key, conversations=conversations, messages=messages
    ):
        return await _replayed_counters(
            session, character_id, idempotency_key, conversations=conversations, messages=messages
        )
    counters = await repo.change_counters(
        session, character_id, conversations=conversations, messages=messages
    )
    if counters is None:
        raise NotFoundError("Character not found")
    await session.commit()
    return counters


async def _replayed_counters(
    session: AsyncSession, character_id: uuid.UUID, key: str, *, conversations: int, messages: int
) -> tuple[int, int]:
    """The current counters for a key already applied; 404 when the character is unknown or deleted."""
    applied = await repo.get_counter_change(session, character_id, key)
    character = await repo.get(session, character_id)
    if applied is None or character is None:
        raise NotFoundError("Character not found")
    if (applied.conversations, applied.messages) != (conversations, messages):
        raise ConflictError(
            "This idempotency key was already used for another counter change",
            code="idempotency_key_in_use",
            details={
                "applied": {"conversations": applied.conversations, "messages": applied.messages},
                "requested": {"conversations": conversations, "messages": messages},
            },
        )
    return character.conversation_count, character.message_count


async def change_counters_batch(
    session: AsyncSession, changes: list[KeyedCounterChange]
) -> list[CounterChangeResult]:
    """`change_counters` for many keyed changes in one transaction, answered per change: an unknown
    character or a key reused with other amounts is reported (`not_found`, `conflict`), never failing
    the others. A character's changes are summed and added in one update (floored at zero once)."""
    keyed = [
        repo.KeyedChange(c.character_id, c.idempotency_key, c.conversations, c.messages) for c in changes
    ]
    recorded = await repo.record_counter_changes(session, keyed)
    first: dict[tuple[uuid.UUID, str], int] = {}  # a twin later in the batch is a repeat of the first
    totals: dict[uuid.UUID, tuple[int, int]] = {}
    for index, change in enumerate(keyed):
        pair = (change.character_id, change.key)
        if pair in recorded and pair not in first:
            first[pair] = index
            conversations, messages = totals.get(change.character_id, (0, 0))
            totals[change.character_id] = (conversations + change.conversations, messages + change.messages)
    counters: dict[uuid.UUID, tuple[int, int]] = {}
    for character_id in sorted(totals):  # rows locked in one order: concurrent batches never deadlock
        conversations, messages = totals[character_id]
        changed = await repo.change_counters(
            session, character_id, conversations=conversations, messages=messages
        )
        if changed is not None:  # else deleted meanwhile: reported as not found
            counters[character_id] = changed
    others = [i for i, c in enumerate(keyed) if first.get((c.character_id, c.key)) != i]
    applied = await repo.get_counter_changes(session, [(keyed[i].character_id, keyed[i].key) for i in others])
    unread = sorted({keyed[i].character_id for i in others} - set(counters) - set(totals))
    counters |= await repo.live_counters(session, unread)
    await session.commit()
    return [_counter_result(c, i, first, applied, counters) for i, c in enumerate(keyed)]


def _counter_result(
    change: repo.KeyedChange,
    index: int,
    first: dict[tuple[uuid.UUID, str], int],
    applied: dict[tuple[uuid.UUID, str], AppliedCounterChange],
    counters: dict[uuid.UUID, tuple[int, int]],
) -> CounterChangeResult:
    pair = (change.character_id, change.key)
    now = counters.get(change.character_id)
    before = applied.get(pair)
    status: CounterChangeStatus
    if now is None or (first.get(pair) != index and before is None):
        status, now = "not_found", None
    elif first.get(pair) == index:
        status = "applied"
    elif before is not None and (before.conversations, before.messages) != (
        change.conversations,
        change.messages,
    ):
        status = "conflict"
    else:
        status = "repeated"
    return CounterChangeResult(
        character_id=change.character_id,
        idempotency_key=change.key,
        status=status,
        conversation_count=now[0] if now else None,
        message_count=now[1] if now else None,
    )


async def import_card(
    session: AsyncSession,
    caller: Principal,
    card: ImportedCard,
    *,
    visibility: str | None,
    metadata_limit: int,
) -> Character:
    data = card.character
    if visibility:
        data = data.model_copy(update={"visibility": visibility})
    character = await create(session, caller, data, metadata_limit=metadata_limit)
    if card.avatar is not None:
        await repo.save_avatar(session, character.id, card.avatar, "image/png")
        character.avatar_url = f"/api/v1/characters/{character.id}/avatar"
        await session.commit()
    return character


async def avatar_of(session: AsyncSession, character_id: uuid.UUID) -> bytes | None:
    avatar = await repo.get_avatar(session, character_id)
    return avatar.data if avatar else None


async def tag_counts(session: AsyncSession, *, limit: int, offset: int) -> tuple[list[tuple[str, int]], int]:
    return await repo.tag_counts(session, limit=limit, offset=offset)
