"""Registration, login, refresh-token rotation, logout and service tokens."""

from __future__ import annotations

import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import User
from app.models.base import utcnow
from app.repositories import tokens as token_repo
from app.repositories import users as user_repo
from app.repositories.rate_limits import LoginLimiter
from app.schemas.auth import ServiceToken, TokenPair
from app.schemas.user import UserCreate
from app.services import users as user_service
from app.services.keys import TokenSigner
from app.services.passwords import PasswordHasher, check_throttled, verify_throttled
from chat_common.auth import scopes_of
from chat_common.errors import ForbiddenError, UnauthorizedError


@dataclass
class AuthContext:
    """What the auth rules need besides the database session."""

    settings: Settings
    signer: TokenSigner
    hasher: PasswordHasher
    limiter: LoginLimiter


async def register(session: AsyncSession, ctx: AuthContext, data: UserCreate) -> User:
    return await user_service.create_user(
        session, ctx.hasher, data=data, role="user", initial_credits=ctx.settings.initial_credits
    )


async def _issue_pair(
    session: AsyncSession, ctx: AuthContext, user: User, family_id: uuid.UUID | None = None
) -> tuple[TokenPair, uuid.UUID]:
    refresh = secrets.token_urlsafe(48)
    row = await token_repo.add(
        session,
        user_id=user.id,
        family_id=family_id or uuid.uuid4(),
        token=refresh,
        expires_at=utcnow() + timedelta(days=ctx.settings.refresh_token_days),
    )
    pair = TokenPair(
        access_token=ctx.signer.access_token(user_id=str(user.id), role=user.role),
        refresh_token=refresh,
        expires_in=ctx.settings.access_token_minutes * 60,
    )
    return pair, row.id


async def login(session: AsyncSession, ctx: AuthContext, *, login: str, password: str, ip: str) -> TokenPair:
    """Password login by username or email, rate limited on failures per account and per IP."""
    # A NUL cannot be in any stored name (and PostgreSQL refuses to compare it): no such user.
    user = None if "\x00" in login else await user_repo.get_by_login(session, login)
    valid = await verify_throttled(
        ctx.hasher,
        ctx.limiter,
        # by id, so the username and the email of one account share one counter
        account=str(user.id) if user else login,
        ip=ip,
        password=password,
        password_hash=user.password_hash if user else None,
    )
    if not valid or user is None:
        raise UnauthorizedError("Incorrect username or password", code="invalid_credentials")
    if not user.is_active:
        raise ForbiddenError("This account is deactivated", code="account_inactive")
    pair, _ = await _issue_pair(session, ctx, user)
    await session.commit()
    return pair


async def refresh(session: AsyncSession, ctx: AuthContext, token: str) -> TokenPair:
    """Rotate a refresh token. Reusing a rotated one revokes its whole family (it was stolen)."""
    row = await token_repo.get_for_update(session, token)
    if row is None:
        raise UnauthorizedError("Unknown refresh token", code="invalid_refresh_token")
    if row.revoked_at is not None:
        await token_repo.revoke_family(session, row.family_id)
        await session.commit()
        raise UnauthorizedError(
            "Refresh token was already used; every session of this login is revoked",
            code="refresh_token_reused",
        )
    if row.expires_at <= utcnow():
        raise UnauthorizedError("Refresh token has expired", code="invalid_refresh_token")
    user = await user_repo.get(session, row.user_id)
    if user is None or not user.is_active:
        await token_repo.revoke_family(session, row.family_id)
        await session.commit()
        raise UnauthorizedError("This account is deactivated", code="account_inactive")
    pair, new_id = await _issue_pair(session, ctx, user, family_id=row.family_id)
    row.revoked_at = utcnow()
    row.replaced_by = new_id
    await session.commit()
    return pair


async def logout(session: AsyncSession, token: str) -> None:
    """Revoke the refresh token's family; an unknown token is ignored (nothing to revoke)."""
    row = await token_repo.get_for_update(session, token)
    if row is not None:
        await token_repo.revoke_family(session, row.family_id)
    await session.commit()


async def service_token(
    ctx: AuthContext, *, client_id: str, client_secret: str, scope: str, ip: str
) -> ServiceToken:
    """OAuth2 client credentials for the internal services configured by environment.

    Wrong secrets are throttled like passwords, per client and caller IP (so a guesser elsewhere
    cannot lock a service out) and per IP.
    """
    client = ctx.settings.service_clients.get(client_id)
    expected = client.secret.get_secret_value() if client else secrets.token_hex(16)

    async def matches() -> bool:
        return hmac.compare_digest(expected.encode(), client_secret.encode()) and client is not None

    valid = await check_throttled(ctx.limiter, account=f"client:{client_id}@{ip}", ip=ip, check=matches)
    if not valid or client is None:
        raise UnauthorizedError("Invalid client credentials", code="invalid_client")
    requested = scopes_of(scope) or client.scopes
    refused = set(requested) - set(client.scopes)
    if refused:
        raise ForbiddenError(
            f"Scope(s) not allowed for {client_id}: {', '.join(sorted(refused))}", code="invalid_scope"
        )
    return ServiceToken(
        access_token=ctx.signer.service_token(client_id=client_id, scopes=requested),
        expires_in=ctx.settings.service_token_minutes * 60,
        scope=" ".join(requested),
    )
