"""Alembic environment: async engine, `users` schema, one migrator at a time (advisory lock)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.config import get_settings
from app.models import Base
from app.models.base import SCHEMA

config = context.config
target_metadata = Base.metadata
MIGRATION_LOCK_ID = 80_240_001


def _database_url() -> str:
    return str(config.attributes.get("database_url") or get_settings().async_database_url)


def _run(connection: Connection) -> None:
    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"'))
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table_schema=SCHEMA,
        include_schemas=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_async_engine(_database_url())
    async with engine.connect() as connection:
        # Several replicas may start at once: only one migrates, the others wait and find it done.
        await connection.execute(text(f"SELECT pg_advisory_lock({MIGRATION_LOCK_ID})"))
        try:
            await connection.run_sync(_run)
            await connection.commit()
        finally:
            await connection.execute(text(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_ID})"))
    await engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=_database_url(), target_metadata=target_metadata, literal_binds=True, version_table_schema=SCHEMA
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
