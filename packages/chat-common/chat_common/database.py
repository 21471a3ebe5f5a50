"""PostgreSQL plumbing shared by the SQL services: settings, engines, sessions, migrations, base model."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import asyncpg
from alembic import command
from alembic.config import Config
from fastapi import Depends, FastAPI, Request
from pydantic import field_validator
from sqlalchemy import DateTime, text
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from chat_common.errors import ServiceUnavailableError, UnprocessableError
from chat_common.settings import CommonSettings

logger = logging.getLogger(__name__)

BAD_VALUE_MESSAGE = "A value in the request is out of range or not valid text"

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


# Every timestamp is timezone-aware (UTC): use in a declarative base's `type_annotation_map`.
TYPE_ANNOTATION_MAP: dict[type, Any] = {datetime: DateTime(timezone=True)}


def async_database_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and point SQLAlchemy at asyncpg."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("DATABASE_URL must be a postgresql:// URL")


DEV_DATABASE_URL = "postgresql://postgres@127.0.0.1:5431/chatbot"


class DatabaseSettings(CommonSettings):
    database_url: str = DEV_DATABASE_URL
    db_pool_size: int = 16
    db_pool_timeout: float = 10.0

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str) -> str:
        async_database_url(value)
        return value

    @property
    def async_database_url(self) -> str:
        return async_database_url(self.database_url)

    def unsafe_production_values(self) -> list[str]:
        problems = super().unsafe_production_values()
        if self.database_url == DEV_DATABASE_URL:
            problems.append("DATABASE_URL must be set (the development default has no password)")
        return problems


def create_engine(settings: DatabaseSettings, *, autocommit: bool = False) -> AsyncEngine:
    """The engine for transactions, or (autocommit) one for single-query reads, which spares the
    BEGIN and ROLLBACK round trips that would otherwise wrap every read."""
    return create_async_engine(
        settings.async_database_url,
        # A fixed pool: overflow connections would be opened and closed again under sustained load.
        pool_size=settings.db_pool_size,
        max_overflow=0,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=1800,
        # A connection is checked before use: after PostgreSQL was restarted, the pooled connections
        # to the old server are found dead and replaced, so the first request after it already works.
        pool_pre_ping=True,
        # asyncpg waits 60 s for a connection by default; an unreachable server is told sooner (503).
        connect_args={"timeout": settings.db_pool_timeout},
        isolation_level="AUTOCOMMIT" if autocommit else "READ COMMITTED",
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def run_migrations(service_dir: Path, settings: DatabaseSettings) -> None:
    """Upgrade the service's schema to head (in a thread: Alembic runs its own event loop)."""
    config = Config(str(service_dir / "alembic.ini"))
    config.set_main_option("script_location", str(service_dir / "alembic"))
    config.attributes["database_url"] = settings.async_database_url
    await asyncio.to_thread(command.upgrade, config, "head")


async def ping(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session:
        await session.execute(text("SELECT 1"))


@asynccontextmanager
async def open_database(app: FastAPI, service_dir: Path, settings: DatabaseSettings) -> AsyncIterator[None]:
    """Migrate, then give the app `sessionmaker`, `read_sessionmaker` and a `postgres` readiness check."""
    await run_migrations(service_dir, settings)
    engine, read_engine = create_engine(settings), create_engine(settings, autocommit=True)
    app.state.sessionmaker = create_sessionmaker(engine)
    app.state.read_sessionmaker = create_sessionmaker(read_engine)
    app.state.readiness_checks["postgres"] = lambda: ping(app.state.read_sessionmaker)
    try:
        yield
    finally:
        await engine.dispose()
        await read_engine.dispose()


# What a lost or refused database connection surfaces as: asyncpg's OSErrors on connect, SQLAlchemy's
# wrapped DBAPI errors later, and the pool's own timeout.
UNAVAILABLE = (ConnectionError, TimeoutError, OperationalError, InterfaceError, PoolTimeout)


def _is_bad_value(exc: DBAPIError) -> bool:
    """A value PostgreSQL cannot store or compare (e.g. a NUL in a query parameter): the client's input."""
    if isinstance(exc, DataError):
        return True
    cause: BaseException | None = exc.orig
    while cause is not None:
        if isinstance(cause, asyncpg.exceptions.DataError):
            return True
        cause = cause.__cause__
    return False


def _unavailable() -> ServiceUnavailableError:
    return ServiceUnavailableError(
        "PostgreSQL is unavailable", code="dependency_unavailable", details={"service": "postgres"}
    )


@asynccontextmanager
async def _session(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session whose lost database is a 503 and whose refused value is a 422. The driver's text
    names hosts, tables and values: it goes to the log line (with the request id), never to the client."""
    try:
        async with factory() as session:
            yield session
    except UNAVAILABLE as exc:
        cause = exc.orig if isinstance(exc, DBAPIError) else exc  # the driver's error, without the SQL
        logger.warning("PostgreSQL is unavailable: %s: %s", cause.__class__.__name__, cause)
        raise _unavailable() from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:  # e.g. the backend was terminated in the middle of a statement
            logger.warning("PostgreSQL connection lost: %s", exc.orig)
            raise _unavailable() from exc
        if not _is_bad_value(exc):
            raise
        logger.warning("PostgreSQL refused a value from the request: %s", exc.orig)
        raise UnprocessableError(BAD_VALUE_MESSAGE) from exc


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A transactional session (`app.state.sessionmaker`); closing it rolls back what was not committed."""
    async with _session(request.app.state.sessionmaker) as session:
        yield session


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """An autocommit session (`app.state.read_sessionmaker`) for single-query reads."""
    async with _session(request.app.state.read_sessionmaker) as session:
        yield session


# scope="function": the session closes (and its connection returns to the pool) as soon as the
# endpoint returns, not after the response has been written to the client.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]
