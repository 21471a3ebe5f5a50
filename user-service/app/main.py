"""user-service: accounts, tokens (RS256 + JWKS), service tokens and the credits ledger."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api.v1 import jwks
from app.api.v1.router import api_router
from app.config import SERVICE_DIR, Settings, get_settings
from app.repositories.rate_limits import LoginLimiter
from app.schemas.user import UserCreate
from app.services import credits as credit_service
from app.services import users as user_service
from app.services.auth import AuthContext
from app.services.keys import TokenSigner, load_private_key_pem
from app.services.passwords import PasswordHasher
from chat_common.app import create_service_app
from chat_common.auth import TOKEN_PATH, StaticKeySource, TokenVerifier
from chat_common.database import UNAVAILABLE as DATABASE_UNAVAILABLE
from chat_common.database import open_database

logger = logging.getLogger(__name__)


async def create_first_admin(
    sessionmaker: async_sessionmaker[AsyncSession], hasher: PasswordHasher, settings: Settings
) -> None:
    """Create FIRST_ADMIN_EMAIL's admin when no account has that email; never promote one that does."""
    if not settings.first_admin_email or not settings.first_admin_password:
        return
    try:
        data = UserCreate(
            email=settings.first_admin_email,
            username=settings.first_admin_username,
            display_name="Administrator",
            password=settings.first_admin_password.get_secret_value(),
        )
    except ValidationError as exc:  # its text would show the password: name the problems only
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'password'}: {e['msg']}" for e in exc.errors()
        )
        raise RuntimeError(f"FIRST_ADMIN_* settings do not make a valid account: {problems}") from None
    async with sessionmaker() as session:
        outcome = await user_service.bootstrap_admin(
            session, hasher, data=data, initial_credits=settings.initial_credits
        )
    if outcome in ("created", "present"):
        logger.info("first admin %s", "created" if outcome == "created" else "already present")
        return
    if outcome == "username_taken":
        message = (
            f"FIRST_ADMIN_USERNAME {data.username!r} is taken by another account, so the first admin "
            f"{data.email} was not created. Set FIRST_ADMIN_USERNAME to a free username, or create the "
            f"admin with: python -m app.cli create-admin --email {data.email} --username <a free username>"
        )
    else:
        message = (
            f"FIRST_ADMIN_EMAIL {data.email} belongs to an existing account that is not an admin; it was "
            "not promoted. To make that account admin on purpose: python -m app.cli create-admin --email "
            f"{data.email}; otherwise configure another FIRST_ADMIN_EMAIL."
        )
    logger.error(message)
    if settings.is_production:
        raise RuntimeError(message)


async def sweep_reservations(sessionmaker: async_sessionmaker[AsyncSession], every: float) -> None:
    """Release reservations left unsettled past their TTL (a crashed caller must not keep credits)."""
    while True:
        await asyncio.sleep(every)
        try:
            async with sessionmaker() as session:
                expired = await credit_service.expire_due(session)
            if expired:
                logger.info("released %d expired credit reservations", expired)
        except DATABASE_UNAVAILABLE as exc:  # an outage: one line a round, not a traceback
            logger.warning("reservation sweep skipped, PostgreSQL is away (%s); retrying next round", exc)
        except Exception:
            logger.exception("reservation sweep failed; retrying next round")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hasher = PasswordHasher(settings.bcrypt_rounds, concurrency=settings.password_hash_concurrency)
        signer = TokenSigner(load_private_key_pem(settings), settings)
        limiter = LoginLimiter(
            settings.redis_url,
            prefix=settings.redis_prefix,
            per_account=settings.login_account_limit,
            per_ip=settings.login_ip_limit,
        )
        app.state.auth = AuthContext(settings=settings, signer=signer, hasher=hasher, limiter=limiter)
        app.state.token_verifier = TokenVerifier(
            StaticKeySource(signer.jwks), issuer=settings.jwt_issuer, audience=settings.jwt_audience
        )
        app.state.readiness_checks["redis"] = limiter.ping
        async with open_database(app, SERVICE_DIR, settings):
            sessionmaker = app.state.sessionmaker
            await create_first_admin(sessionmaker, hasher, settings)
            sweeper = asyncio.create_task(
                sweep_reservations(sessionmaker, settings.reservation_sweep_seconds)
            )
            try:
                yield
            finally:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
                await limiter.close()

    app = create_service_app(
        settings,
        title="user-service",
        description="Accounts, OAuth2 login, RS256 JWT + JWKS, service tokens and the credits ledger.",
        lifespan=lifespan,
        token_url=TOKEN_PATH,  # its own: the documents of the other services point here
    )
    app.include_router(api_router)
    app.include_router(jwks.router)
    return app


app = create_app()
