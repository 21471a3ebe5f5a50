"""Declarative base of user-service: every table in the `users` schema."""

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from chat_common.database import NAMING_CONVENTION, TYPE_ANNOTATION_MAP, utcnow

SCHEMA = "users"


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA, naming_convention=NAMING_CONVENTION)
    type_annotation_map = TYPE_ANNOTATION_MAP


__all__ = ["SCHEMA", "Base", "utcnow"]
