"""Queries on characters: fetch, write, catalogue search, tags, counters, avatars."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    Uuid,
    bindparam,
    column,
    exists,
    func,
    literal,
    select,
    tuple_,
    update,
    values,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import AppliedCounterChange, Character, CharacterAvatar
from chat_common.database import utcnow

SUMMARY_COLUMNS = (
    Character.id,
    Character.owner_id,
    Character.name,
    Character.description,
    Character.tags,
    Character.creator,
    Character.avatar_url,
    Character.visibility,
    Character.conversation_count,
    Character.message_count,
    Character.created_at,
    Character.updated_at,
)


@dataclass(frozen=True)
class CatalogueQuery:
    q: str | None
    tags: list[str]
    creator: str | None
    owner_id: uuid.UUID | None
    public_only: bool
    sort: str
    limit: int
    offset: int


def prefix_tsquery(q: str) -> str | None:
    """`dragon kni` -> `dragon:* & kni:*` (words only, so the query cannot be malformed)."""
    words = re.findall(r"\w+", q.lower())[:10]
    return " & ".join(f"{w}:*" for w in words) or None


# Built once: constructing a SELECT costs more than running it on the hot path (GET by id).
_BY_ID = select(Character).where(Character.id == bindparam("character_id"), Character.deleted_at.is_(None))


async def get(session: AsyncSession, character_id: uuid.UUID) -> Character | None:
    return (await session.execute(_BY_ID, {"character_id": character_id})).scalar_one_or_none()


async def add(session: AsyncSession, character: Character) -> Character:
    session.add(character)
    await session.flush()
    return character


async def catalogue(session: AsyncSession, query: CatalogueQuery) -> tuple[list[Any], int]:
    conditions: list[ColumnElement[bool]] = [Character.deleted_at.is_(None)]
    if query.public_only:
        conditions.append(Character.visibility == "public")
    if query.owner_id:
        conditions.append(Character.owner_id == query.owner_id)
    if query.tags:
        conditions.append(Character.tags.contains(query.tags))
    if query.creator:
        conditions.append(func.lower(Character.creator) == query.creator.lower())
    rank = None
    if query.q and (terms := prefix_tsquery(query.q)):
        tsquery = func.to_tsquery("simple", terms)
        conditions.append(Character.search_vector.op("@@")(tsquery))
        rank = func.ts_rank(Character.search_vector, tsquery)
    # The total rides along as a window count: one query, one pass over the matches.
    statement = select(*SUMMARY_COLUMNS, func.count().over().label("total")).where(*conditions)
    orders: dict[str, list[ColumnElement[Any]]] = {
        "newest": [Character.created_at.desc()],
        "popular": [Character.conversation_count.desc(), Character.message_count.desc()],
        "name": [func.lower(Character.name).asc()],
    }
    order = orders.get(query.sort, [])
    if query.sort == "relevance" and rank is not None:
        order = [rank.desc()]
    statement = statement.order_by(*order, Character.created_at.desc(), Character.id)
    rows = (await session.execute(statement.limit(query.limit).offset(query.offset))).all()
    if rows:
        total = rows[0].total
    else:  # past the last page: count on its own
        count = select(func.count()).select_from(Character).where(*conditions)
        total = (await session.execute(count)).scalar_one()
    return list(rows), int(total)


async def tag_counts(session: AsyncSession, *, limit: int, offset: int) -> tuple[list[tuple[str, int]], int]:
    tag = func.unnest(Character.tags).label("tag")
    public = select(tag).where(Character.visibility == "public", Character.deleted_at.is_(None)).subquery()
    counted = select(public.c.tag, func.count().label("n")).group_by(public.c.tag)
    rows = await session.execute(
        counted.order_by(func.count().desc(), public.c.tag).limit(limit).offset(offset)
    )
    total = await session.execute(select(func.count()).select_from(counted.subquery()))
    return [(r.tag, int(r.n)) for r in rows], int(total.scalar_one())


async def change_counters(
    session: AsyncSession, character_id: uuid.UUID, *, conversations: int, messages: int
) -> tuple[int, int] | None:
    """Add to the counters atomically (never below zero); None when the character does not exist."""
    result = await session.execute(
        update(Character)
        .where(Character.id == character_id, Character.deleted_at.is_(None))
        .values(
            conversation_count=func.greatest(Character.conversation_count + conversations, 0),
            message_count=func.greatest(Character.message_count + messages, 0),
        )
        .returning(Character.conversation_count, Character.message_count)
    )
    row = result.first()
    return None if row is None else (int(row[0]), int(row[1]))


async def record_counter_change(
    session: AsyncSession, character_id: uuid.UUID, key: str, *, conversations: int, messages: int
) -> bool:
    """Record `key` as applied to a live character; False when the key is already recorded (a
    concurrent twin waits here until the first commits or rolls back) or the character is unknown."""
    live = exists().where(Character.id == character_id, Character.deleted_at.is_(None))
    values = {
        "character_id": character_id,
        "idempotency_key": key,
        "conversations": conversations,
        "messages": messages,
        "created_at": utcnow(),
    }
    table = AppliedCounterChange.__table__
    row = select(*(literal(value, table.c[name].type) for name, value in values.items())).where(live)
    columns = list(values)
    result = await session.execute(
        insert(AppliedCounterChange)
        .from_select(columns, row)
        .on_conflict_do_nothing(index_elements=["character_id", "idempotency_key"])
        .returning(AppliedCounterChange.character_id)
    )
    return result.first() is not None


async def get_counter_change(
    session: AsyncSession, character_id: uuid.UUID, key: str
) -> AppliedCounterChange | None:
    return await session.get(AppliedCounterChange, (character_id, key))


@dataclass(frozen=True)
class KeyedChange:
    character_id: uuid.UUID
    key: str
    conversations: int
    messages: int


async def record_counter_changes(
    session: AsyncSession, changes: list[KeyedChange]
) -> set[tuple[uuid.UUID, str]]:
    """`record_counter_change` for many in one statement: the (character, key) pairs recorded now.
    Rows are inserted in (character, key) order, so two batches that share keys wait on each other
    in one order and never deadlock."""
    rows = (
        values(
            column("character_id", Uuid),
            column("idempotency_key", String),
            column("conversations", Integer),
            column("messages", Integer),
            name="change",
        )
        .data([(c.character_id, c.key, c.conversations, c.messages) for c in changes])
        .alias("change")
    )
    live = (
        select(rows, literal(utcnow(), AppliedCounterChange.__table__.c.created_at.type))
        .join(Character, Character.id == rows.c.character_id)
        .where(Character.deleted_at.is_(None))
        .order_by(rows.c.character_id, rows.c.idempotency_key)
    )
    result = await session.execute(
        insert(AppliedCounterChange)
        .from_select(["character_id", "idempotency_key", "conversations", "messages", "created_at"], live)
        .on_conflict_do_nothing(index_elements=["character_id", "idempotency_key"])
        .returning(AppliedCounterChange.character_id, AppliedCounterChange.idempotency_key)
    )
    return {(row[0], row[1]) for row in result}


async def get_counter_changes(
    session: AsyncSession, pairs: list[tuple[uuid.UUID, str]]
) -> dict[tuple[uuid.UUID, str], AppliedCounterChange]:
    """The recorded changes of these (character, key) pairs."""
    if not pairs:
        return {}
    pair = tuple_(AppliedCounterChange.character_id, AppliedCounterChange.idempotency_key)
    found = await session.scalars(select(AppliedCounterChange).where(pair.in_(pairs)))
    return {(change.character_id, change.idempotency_key): change for change in found}


async def live_counters(
    session: AsyncSession, character_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[int, int]]:
    """(conversation count, message count) of each live character among `character_ids`."""
    if not character_ids:
        return {}
    rows = await session.execute(
        select(Character.id, Character.conversation_count, Character.message_count).where(
            Character.id.in_(character_ids), Character.deleted_at.is_(None)
        )
    )
    return {row[0]: (int(row[1]), int(row[2])) for row in rows}


async def soft_delete(session: AsyncSession, character: Character) -> None:
    character.deleted_at = utcnow()
    await session.flush()


async def get_avatar(session: AsyncSession, character_id: uuid.UUID) -> CharacterAvatar | None:
    return await session.get(CharacterAvatar, character_id)


async def save_avatar(session: AsyncSession, character_id: uuid.UUID, data: bytes, content_type: str) -> None:
    await session.execute(
        insert(CharacterAvatar)
        .values(character_id=character_id, data=data, content_type=content_type, updated_at=utcnow())
        .on_conflict_do_update(
            index_elements=[CharacterAvatar.character_id],
            set_={"data": data, "content_type": content_type, "updated_at": utcnow()},
        )
    )
