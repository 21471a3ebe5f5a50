"""Queries on users."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import User
from chat_common.errors import ConflictError

# Built once: constructing a SELECT costs more than running it on the hot path (GET /users/me).
_BY_ID = select(User).where(User.id == bindparam("user_id"))


async def get(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return (await session.execute(_BY_ID, {"user_id": user_id})).scalar_one_or_none()


async def get_for_update(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    """The row as committed now, locked until the transaction ends."""
    query = select(User).where(User.id == user_id).with_for_update().execution_options(populate_existing=True)
    return (await session.execute(query)).scalar_one_or_none()


async def lock_active_admin_ids(session: AsyncSession) -> list[uuid.UUID]:
    """Ids of the active admins, their rows locked (in id order, so two callers cannot deadlock).

    A second caller waits for the first to commit and then sees only the rows that still match,
    so two admins demoting each other at once cannot both count the other as the one who stays.
    """
    query = select(User.id).where(User.role == "admin", User.is_active.is_(True)).order_by(User.id)
    return list((await session.execute(query.with_for_update())).scalars())


async def get_by_login(session: AsyncSession, login: str) -> User | None:
    """Find by email or username, case-insensitively."""
    needle = login.lower()
    query = select(User).where(or_(func.lower(User.email) == needle, func.lower(User.username) == needle))
    return (await session.execute(query)).scalars().first()


async def get_by_email(session: AsyncSession, email: str) -> User | None:
    query = select(User).where(func.lower(User.email) == email.lower())
    return (await session.execute(query)).scalar_one_or_none()


def _conflict_from(exc: IntegrityError) -> ConflictError:
    text = str(exc.orig)
    if "email" in text:
        return ConflictError("A user with this email already exists", code="email_taken")
    if "username" in text:
        return ConflictError("This username is taken", code="username_taken")
    return ConflictError("User already exists")


async def _flush(session: AsyncSession) -> None:
    """Write pending changes; a duplicate email or username becomes a 409."""
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        raise _conflict_from(exc) from exc


async def add(session: AsyncSession, user: User) -> User:
    session.add(user)
    await _flush(session)
    return user


async def update_fields(session: AsyncSession, user: User, fields: dict[str, Any]) -> User:
    for name, value in fields.items():
        setattr(user, name, value)
    await _flush(session)
    return user


async def search(
    session: AsyncSession,
    *,
    q: str | None,
    role: str | None,
    is_active: bool | None,
    limit: int,
    offset: int,
) -> tuple[list[User], int]:
    conditions = []
    if q:
        escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        conditions.append(
            or_(
                func.lower(User.email).like(pattern),
                func.lower(User.username).like(pattern),
                func.lower(User.display_name).like(pattern),
            )
        )
    if role:
        conditions.append(User.role == role)
    if is_active is not None:
        conditions.append(User.is_active == is_active)
    total = (await session.execute(select(func.count()).select_from(User).where(*conditions))).scalar_one()
    rows = await session.execute(
        select(User).where(*conditions).order_by(User.created_at.desc(), User.id).limit(limit).offset(offset)
    )
    return list(rows.scalars()), int(total)
