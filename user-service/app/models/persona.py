"""A persona: how a user appears in a chat (name, description, avatar); at most one is the default."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utcnow


class Persona(Base):
    __tablename__ = "persona"
    __table_args__ = (
        Index("ix_persona_user_created", "user_id", "created_at"),
        # At most one default per user, whatever two transactions do at once.
        Index("uq_persona_user_default", "user_id", unique=True, postgresql_where=text("is_default")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(2000), default="")
    avatar_url: Mapped[str | None] = mapped_column(String(2048), default=None)
    is_default: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
