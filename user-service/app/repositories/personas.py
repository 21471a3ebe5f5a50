"""Queries on personas; every one is scoped to its owner."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Persona
from chat_common.database import utcnow


async def get(session: AsyncSession, user_id: uuid.UUID, persona_id: uuid.UUID) -> Persona | None:
    query = select(Persona).where(Persona.id == persona_id, Persona.user_id == user_id)
    return (await session.execute(query)).scalar_one_or_none()


async def get_default(session: AsyncSession, user_id: uuid.UUID) -> Persona | None:
    query = select(Persona).where(Persona.user_id == user_id, Persona.is_default.is_(True))
    return (await session.execute(query)).scalar_one_or_none()


async def count(session: AsyncSession, user_id: uuid.UUID) -> int:
    query = select(func.count()).select_from(Persona).where(Persona.user_id == user_id)
    return int((await session.execute(query)).scalar_one())


async def list_for_user(
    session: AsyncSession, user_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[Persona], int]:
    """The default first, then the oldest."""
    query = (
        select(Persona)
        .where(Persona.user_id == user_id)
        .order_by(Persona.is_default.desc(), Persona.created_at, Persona.id)
        .limit(limit)
        .offset(offset)
    )
    rows = list((await session.execute(query)).scalars())
    return rows, await count(session, user_id)


async def clear_default(session: AsyncSession, user_id: uuid.UUID, *, keep: uuid.UUID | None = None) -> None:
    """No persona of the user (but `keep`) is the default any more."""
    query = update(Persona).where(Persona.user_id == user_id, Persona.is_default.is_(True))
    if keep is not None:
        query = query.where(Persona.id != keep)
    await session.execute(query.values(is_default=False, updated_at=utcnow()))


async def add(session: AsyncSession, persona: Persona) -> Persona:
    session.add(persona)
    await session.flush()
    return persona


async def update_fields(session: AsyncSession, persona: Persona, fields: dict[str, Any]) -> Persona:
    for name, value in fields.items():
        setattr(persona, name, value)
    await session.flush()
    return persona


async def delete_owned(session: AsyncSession, user_id: uuid.UUID, persona_id: uuid.UUID) -> bool:
    """Delete the persona if the user owns it; whether there was one."""
    query = delete(Persona).where(Persona.id == persona_id, Persona.user_id == user_id).returning(Persona.id)
    return (await session.execute(query)).scalar_one_or_none() is not None
