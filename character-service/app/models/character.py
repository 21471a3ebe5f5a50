"""A character (one-to-one with a Character Card V2), its stored avatar image, and the counter changes
already applied under an idempotency key."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, LargeBinary, String, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base
from chat_common.database import utcnow


class Character(Base):
    __tablename__ = "character"
    __table_args__ = (
        CheckConstraint("visibility IN ('private', 'unlisted', 'public')", name="visibility_known"),
        Index("ix_character_search", "search_vector", postgresql_using="gin"),
        Index("ix_character_tags", "tags", postgresql_using="gin"),
        Index(
            "ix_character_public_created",
            "created_at",
            postgresql_where=text("visibility = 'public' AND deleted_at IS NULL"),
        ),
        Index("ix_character_owner", "owner_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[uuid.UUID]
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    personality: Mapped[str] = mapped_column(Text, default="")
    scenario: Mapped[str] = mapped_column(Text, default="")
    greeting: Mapped[str] = mapped_column(Text, default="")
    alternate_greetings: Mapped[list[str]] = mapped_column(JSONB, default=list)
    example_dialogues: Mapped[str] = mapped_column(Text, default="")
    system_prompt: Mapped[str] = mapped_column(Text, default="")
    post_history_instructions: Mapped[str] = mapped_column(Text, default="")
    creator_notes: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[str]] = mapped_column(ARRAY(String(64)), default=list)
    creator: Mapped[str] = mapped_column(String(200), default="")
    character_version: Mapped[str] = mapped_column(String(64), default="")
    avatar_url: Mapped[str | None] = mapped_column(String(2048), default=None)
    visibility: Mapped[str] = mapped_column(String(16), default="private")
    version: Mapped[int] = mapped_column(default=1)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, default=dict)
    extensions: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    character_book: Mapped[dict[str, Any] | None] = mapped_column(JSONB, default=None)
    conversation_count: Mapped[int] = mapped_column(default=0)
    message_count: Mapped[int] = mapped_column(default=0)
    # Kept by a trigger (see the migration): name weighs A, tags B, description C.
    search_vector: Mapped[Any] = mapped_column(TSVECTOR, nullable=True, deferred=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)


class CharacterAvatar(Base):
    """The image a PNG card arrived with; exported cards are written into it."""

    __tablename__ = "character_avatar"

    character_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("character.id", ondelete="CASCADE"), primary_key=True
    )
    content_type: Mapped[str] = mapped_column(String(64), default="image/png")
    data: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AppliedCounterChange(Base):
    """A counter change applied under an idempotency key: a retry with the key is not counted again.

    Rows are never removed yet (no sweeper): the table grows by one row per keyed change."""

    __tablename__ = "applied_counter_change"

    character_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("character.id", ondelete="CASCADE"), primary_key=True
    )
    idempotency_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    conversations: Mapped[int]
    messages: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
