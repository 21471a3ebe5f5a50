"""Profile rules for users and admins, and the first-admin bootstrap."""

from __future__ import annotations

import uuid
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from app.models import User
from app.repositories import tokens as token_repo
from app.repositories import users as user_repo
from app.repositories.rate_limits import LoginLimiter
from app.schemas.user import AdminUserUpdate, PasswordChange, UserCreate, UserUpdate
from app.services import credits as credit_service
from app.services.passwords import PasswordHasher, verify_throttled
from chat_common.auth import Principal
from chat_common.errors import (
    ConflictError,
    ForbiddenError,
    InvalidTokenError,
    NotFoundError,
    UnauthorizedError,
    UnprocessableError,
)


async def get_active(session: AsyncSession, user_id: str) -> User:
    """The caller's own account; a deleted or deactivated account no longer answers."""
    user = await user_repo.get(session, uuid.UUID(user_id))
    if user is None or not user.is_active:
        raise InvalidTokenError("This account no longer exists or is deactivated", code="account_inactive")
    return user


async def get_admin(session: AsyncSession, user_id: str) -> User:
    """The caller as an admin, by the account as it is now, whatever role its token still claims."""
    user = await get_active(session, user_id)
    if user.role != "admin":
        raise ForbiddenError("Administrator role required")
    return user


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await user_repo.get(session, user_id)
    if user is None:
        raise NotFoundError("User not found")
    return user


async def get_visible(session: AsyncSession, caller: Principal, user_id: uuid.UUID) -> User:
    """A user sees only themself (others are 404, as if absent); an admin (now) sees everyone."""
    if str(user_id) != caller.user_id:
        me = await get_active(session, caller.user_id)
        if me.role != "admin":
            raise NotFoundError("User not found")
    return await get_user(session, user_id)


async def update_profile(session: AsyncSession, user: User, data: UserUpdate) -> User:
    await user_repo.update_fields(session, user, data.model_dump(exclude_unset=True, exclude_none=True))
    await session.commit()
    return user


async def change_password(
    session: AsyncSession,
    *,
    hasher: PasswordHasher,
    limiter: LoginLimiter,
    user: User,
    data: PasswordChange,
    ip: str,
) -> None:
    """New password after proving the current one (throttled as logins are); refresh tokens revoked."""
    if user.username.lower() in data.new_password.lower():
        message = "Password must not contain the username"
        raise UnprocessableError(
            f"new_password: {message}",
            details=[{"loc": ["body", "new_password"], "msg": message, "type": "value_error"}],
        )
    valid = await verify_throttled(
        hasher,
        limiter,
        account=str(user.id),
        ip=ip,
        password=data.current_password,
        password_hash=user.password_hash,
    )
    if not valid:
        raise UnauthorizedError("Current password is incorrect", code="invalid_credentials")
    user.password_hash = await hasher.hash(data.new_password)
    await token_repo.revoke_all_for_user(session, user.id)
    await session.commit()


def _refuse_last_admin(admins: list[uuid.UUID], user_id: uuid.UUID) -> None:
    if admins == [user_id]:
        raise ConflictError(
            "The last active admin cannot be demoted or deactivated; make another admin first",
            code="last_admin",
        )


async def deactivate(session: AsyncSession, user: User) -> None:
    if user.role == "admin":
        _refuse_last_admin(await user_repo.lock_active_admin_ids(session), user.id)
    user.is_active = False
    await token_repo.revoke_all_for_user(session, user.id)
    await session.commit()


async def admin_update(session: AsyncSession, admin: User, user_id: uuid.UUID, data: AdminUserUpdate) -> User:
    """Role and active flag, decided under a lock of the active admins' rows.

    The caller must still be an active admin once the lock is held (a concurrent demotion wins),
    and the last active admin cannot lose that status.
    """
    admins = await user_repo.lock_active_admin_ids(session)
    if admin.id not in admins:
        raise ForbiddenError("Administrator role required")
    user = await user_repo.get_for_update(session, user_id)
    if user is None:
        raise NotFoundError("User not found")
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    if changes.get("role") == "user" or changes.get("is_active") is False:
        _refuse_last_admin(admins, user.id)
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


async def bootstrap_admin(
    session: AsyncSession, hasher: PasswordHasher, *, data: UserCreate, initial_credits: int
) -> Literal["created", "present", "refused", "username_taken"]:
    """Start-up: create the configured admin only when no account has its email.

    An account that already has the email and is not an admin is left as it is ("refused"):
    whoever registered the email first must not become admin, nor keep their own password as one.
    When another account holds the configured username, nothing is created ("username_taken").
    """
    existing = await user_repo.get_by_email(session, data.email)
    if existing is None:
        try:
            await create_user(session, hasher, data=data, role="admin", initial_credits=initial_credits)
            return "created"
        except ConflictError as exc:  # another replica created it a moment ago, or the username is taken
            existing = await user_repo.get_by_email(session, data.email)
            if existing is None:
                if exc.code == "username_taken":
                    return "username_taken"
                raise
    return "present" if existing.role == "admin" else "refused"


async def create_or_promote_admin(
    session: AsyncSession, hasher: PasswordHasher, *, data: UserCreate, initial_credits: int
) -> tuple[User, Literal["created", "promoted", "present"]]:
    """The operator's CLI: create the admin, or promote the account that has the email on purpose.

    A promoted account keeps its own password.
    """
    existing = await user_repo.get_by_email(session, data.email)
    if existing is None:
        user = await create_user(session, hasher, data=data, role="admin", initial_credits=initial_credits)
        return user, "created"
    if existing.role == "admin":
        return existing, "present"
    existing.role = "admin"
    await session.commit()
    return existing, "promoted"
