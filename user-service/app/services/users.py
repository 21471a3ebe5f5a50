"""Profile rules for users and admins, and the first-admin bootstrap."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.models import User
from app.repositories import tokens as token_repo
from app.repositories import users as user_repo
from app.schemas.user import AdminUserUpdate, PasswordChange, UserCreate, UserUpdate
from app.services import credits as credit_service
from app.services.passwords import PasswordHasher
from chat_common.auth import Principal
from chat_common.errors import NotFoundError, UnauthorizedError


async def get_active(session: AsyncSession, user_id: str) -> User:
    """The caller's own account; a deleted or deactivated account no longer answers."""
    user = await user_repo.get(session, uuid.UUID(user_id))
    if user is None or not user.is_active:
        raise UnauthorizedError("This account no longer exists or is deactivated", code="account_inactive")
    return user


async def get_visible(session: AsyncSession, caller: Principal, user_id: uuid.UUID) -> User:
    """A user sees only themself (others are 404, as if absent); an admin sees everyone."""
    if not caller.is_admin and str(user_id) != caller.user_id:
        raise NotFoundError("User not found")
    user = await user_repo.get(session, user_id)
    if user is None:
        raise NotFoundError("User not found")
    return user


async def update_profile(session: AsyncSession, user: User, data: UserUpdate) -> User:
    await user_repo.update_fields(session, user, data.model_dump(exclude_unset=True, exclude_none=True))
    await session.commit()
    return user


async def change_password(
    session: AsyncSession, hasher: PasswordHasher, user: User, data: PasswordChange
) -> None:
    """New password after proving the current one; every refresh token is revoked."""
    if not await hasher.verify(data.current_password, user.password_hash):
        raise UnauthorizedError("Current password is incorrect", code="invalid_credentials")
    user.password_hash = await hasher.hash(data.new_password)
    await token_repo.revoke_all_for_user(session, user.id)
    await session.commit()


async def deactivate(session: AsyncSession, user: User) -> None:
    user.is_active = False
    await token_repo.revoke_all_for_user(session, user.id)
    await session.commit()


async def admin_update(session: AsyncSession, user_id: uuid.UUID, data: AdminUserUpdate) -> User:
    user = await user_repo.get(session, user_id)
    if user is None:
        raise NotFoundError("User not found")
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    await user_repo.update_fields(session, user, changes)
    if changes.get("is_active") is False:
        await token_repo.revoke_all_for_user(session, user.id)
    await session.commit()
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
    return await user_repo.search(session, q=q, role=role, is_active=is_active, limit=limit, offset=offset)


async def create_user(
    session: AsyncSession,
    hasher: PasswordHasher,
    *,
    data: UserCreate,
    role: str,
    initial_credits: int,
) -> User:
    """A new account with its starting credits and the ledger row that records them."""
    user = User(
        email=data.email,
        username=data.username,
        display_name=data.display_name,
        password_hash=await hasher.hash(data.password),
        role=role,
        credits=initial_credits,
    )
    await user_repo.add(session, user)
    await credit_service.record_signup_bonus(session, user.id, initial_credits)
    await session.commit()
    return user


async def ensure_admin(
    session: AsyncSession, hasher: PasswordHasher, *, data: UserCreate, initial_credits: int
) -> tuple[User, bool]:
    """Create the admin once; an existing account with that email is promoted. (user, created)."""
    existing = await user_repo.get_by_email(session, data.email)
    if existing is not None:
        if existing.role != "admin":
            existing.role = "admin"
            await session.commit()
        return existing, False
    user = await create_user(session, hasher, data=data, role="admin", initial_credits=initial_credits)
    return user, True
