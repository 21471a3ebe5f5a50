"""Alembic environment of character-service (schema `characters`)."""

from app.config import get_settings
from app.models import SCHEMA, Base
from chat_common.migrations import run_alembic

run_alembic(Base.metadata, SCHEMA, get_settings().async_database_url)
