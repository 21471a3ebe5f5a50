"""The append-only credit ledger and the reservations that pay for replies."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utcnow


class CreditTransaction(Base):
    __tablename__ = "credit_transaction"
    __table_args__ = (Index("ix_credit_transaction_user_created", "user_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    amount: Mapped[int]
    kind: Mapped[str] = mapped_column(String(32))
    balance_after: Mapped[int]
    reference: Mapped[str | None] = mapped_column(String(255), default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), default=None)
    reservation_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CreditReservation(Base):
    __tablename__ = "credit_reservation"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_credit_reservation_user_key"),
        Index("ix_credit_reservation_held_expiry", "expires_at", postgresql_where=text("status = 'held'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    amount: Mapped[int]
    committed_amount: Mapped[int | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(16), default="held")
    idempotency_key: Mapped[str] = mapped_column(String(128))
    reference: Mapped[str | None] = mapped_column(String(255), default=None)
    client_id: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]
    settled_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
