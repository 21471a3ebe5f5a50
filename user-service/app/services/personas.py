"""Persona rules: owner-only access, at most one default, at most `max_personas_per_user` each.

Creating a persona and making one the default lock the owner's user row first, so a user's
concurrent creates count one after another (the limit holds) and concurrent switches of the default
cannot both clear the old one and then collide on the one-default index.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Persona, User
from app.repositories import personas as persona_repo
from app.repositories import users as user_repo
from app.schemas.persona import PersonaCreate, PersonaForService, PersonaPublic, PersonaUpdate
from chat_common.errors import ConflictError, NotFoundError


def _not_found() -> NotFoundError:
    return NotFoundError("Persona not found", code="persona_not_found")


async def get_owned(session: AsyncSession, user: User, persona_id: uuid.UUID) -> Persona:
    """The user's persona; anyone else's is 404, as if absent."""
    persona = await persona_repo.get(session, user.id, persona_id)
    if persona is None:
        raise _not_found()
    return persona


async def list_own(
    session: AsyncSession, user: User, *, limit: int, offset: int
) -> tuple[list[Persona], int]:
    return await persona_repo.list_for_user(session, user.id, limit=limit, offset=offset)


async def create(session: AsyncSession, user: User, data: PersonaCreate, *, limit: int) -> Persona:
    """A new persona; a user's first one becomes the default unless `is_default` says otherwise."""
    await user_repo.get_for_update(session, user.id)
    existing = await persona_repo.count(session, user.id)
    if existing >= limit:
        raise ConflictError(
            f"A user has at most {limit} personas; delete one first",
            code="persona_limit",
            details={"limit": limit},
        )
    make_default = data.is_default if data.is_default is not None else existing == 0
    if make_default:
        await persona_repo.clear_default(session, user.id)
    persona = Persona(user_id=user.id, **data.model_dump(exclude={"is_default"}), is_default=make_default)
    await persona_repo.add(session, persona)
    await session.commit()
    return persona


async def update(session: AsyncSession, user: User, persona_id: uuid.UUID, data: PersonaUpdate) -> Persona:
    """The given fields; `is_default: true` takes the default from the previous one in the same
    transaction, `false` leaves the user with no default."""
    changes = data.model_dump(exclude_unset=True)
    if changes.get("is_default"):
        await user_repo.get_for_update(session, user.id)
    persona = await get_owned(session, user, persona_id)
    if changes.get("is_default"):
        await persona_repo.clear_default(session, user.id, keep=persona.id)
    await persona_repo.update_fields(session, persona, changes)
    await session.commit()
    return persona


async def delete(session: AsyncSession, user: User, persona_id: uuid.UUID) -> None:
    """Deleting the default leaves the user with none (no other persona is promoted)."""
    if not await persona_repo.delete_owned(session, user.id, persona_id):
        raise _not_found()
    await session.commit()


async def _active_owner(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await user_repo.get(session, user_id)
    if user is None or not user.is_active:
        raise NotFoundError("User not found", code="user_not_found")
    return user


def _for_service(persona: Persona, user: User) -> PersonaForService:
    public = PersonaPublic.model_validate(persona).model_dump()
    return PersonaForService(**public, user_id=user.id, user_display_name=user.display_name)


async def read_for_service(
    session: AsyncSession, user_id: uuid.UUID, persona_id: uuid.UUID
) -> PersonaForService:
    """A persona of an active user, for conversation-service; a deactivated user's are 404."""
    user = await _active_owner(session, user_id)
    persona = await persona_repo.get(session, user.id, persona_id)
    if persona is None:
        raise _not_found()
    return _for_service(persona, user)


async def read_default_for_service(session: AsyncSession, user_id: uuid.UUID) -> PersonaForService:
    """The default persona of an active user; without one, the 404 carries the display name to use."""
    user = await _active_owner(session, user_id)
    persona = await persona_repo.get_default(session, user.id)
    if persona is None:
        raise NotFoundError(
            "This user has no default persona",
            code="persona_not_found",
            details={"user_display_name": user.display_name},
        )
    return _for_service(persona, user)
