"""Declarative base of character-service: every table in the `characters` schema."""

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from chat_common.database import NAMING_CONVENTION, TYPE_ANNOTATION_MAP

SCHEMA = "characters"


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA, naming_convention=NAMING_CONVENTION)
    type_annotation_map = TYPE_ANNOTATION_MAP
