"""Alembic environment of user-service (schema `users`)."""

from app.config import get_settings
from app.models import Base
from app.models.base import SCHEMA
from chat_common.migrations import run_alembic

run_alembic(Base.metadata, SCHEMA, get_settings().async_database_url)
