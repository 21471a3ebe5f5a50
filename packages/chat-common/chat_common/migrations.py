"""The body of every SQL service's alembic/env.py: async engine, own schema, one migrator at a time."""

from __future__ import annotations

import asyncio
import zlib

from alembic import context
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


def run_alembic(metadata: MetaData, schema: str, default_url: str) -> None:
    """Run the migrations Alembic asked for, in `schema`, under an advisory lock (replicas may race)."""
    config = context.config
    url = str(config.attributes.get("database_url") or default_url)
    lock_id = zlib.crc32(schema.encode())

    def migrate(connection: Connection) -> None:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        context.configure(
            connection=connection, target_metadata=metadata, version_table_schema=schema, include_schemas=True
        )
        with context.begin_transaction():
            context.run_migrations()

    async def online() -> None:
        engine = create_async_engine(url)
        async with engine.connect() as connection:
            await connection.execute(text(f"SELECT pg_advisory_lock({lock_id})"))
            try:
                await connection.run_sync(migrate)
                await connection.commit()
            finally:
                await connection.execute(text(f"SELECT pg_advisory_unlock({lock_id})"))
        await engine.dispose()

    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True, version_table_schema=schema)
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(online())
