"""Async SQLAlchemy engine and sessions, and Alembic migrations applied at start-up."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app.config import Settings

SERVICE_DIR = Path(__file__).resolve().parent.parent


def create_engine(settings: Settings, *, autocommit: bool = False) -> AsyncEngine:
    """The engine for transactions, or (autocommit) one for single-query reads, which spares the
    BEGIN and ROLLBACK round trips that would otherwise wrap every read."""
    return create_async_engine(
        settings.async_database_url,
        # A fixed pool: overflow connections would be opened and closed again under sustained load.
        pool_size=settings.db_pool_size,
        max_overflow=0,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=1800,
        isolation_level="AUTOCOMMIT" if autocommit else "READ COMMITTED",
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(settings: Settings) -> Config:
    config = Config(str(SERVICE_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(SERVICE_DIR / "alembic"))
    config.attributes["database_url"] = settings.async_database_url
    return config


async def run_migrations(settings: Settings) -> None:
    """Upgrade the schema to head (in a thread: Alembic runs its own event loop)."""
    await asyncio.to_thread(command.upgrade, alembic_config(settings), "head")


async def ping(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session:
        await session.execute(text("SELECT 1"))
