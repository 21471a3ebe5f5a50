"""Credit balance updates, the ledger and reservations; every balance change is one atomic UPDATE."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import CreditReservation, CreditTransaction, User


async def adjust_balance(session: AsyncSession, user_id: uuid.UUID, delta: int) -> int | None:
    """Add `delta` unless the balance would drop below zero; the new balance, or None if refused.

    The row lock taken by UPDATE serialises concurrent changes to one user, and the condition is
    re-checked against the latest row, so the balance can never go negative.
    """
    result = await session.execute(
        update(User)
        .where(User.id == user_id, User.credits + delta >= 0)
        .values(credits=User.credits + delta)
        .returning(User.credits)
    )
    balance = result.scalar_one_or_none()
    return None if balance is None else int(balance)


async def balance_of(session: AsyncSession, user_id: uuid.UUID) -> int | None:
    result = await session.execute(select(User.credits).where(User.id == user_id))
    balance = result.scalar_one_or_none()
    return None if balance is None else int(balance)


async def add_transaction(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    amount: int,
    kind: str,
    balance_after: int,
    reference: str | None = None,
    idempotency_key: str | None = None,
    reservation_id: uuid.UUID | None = None,
) -> CreditTransaction:
    row = CreditTransaction(
        user_id=user_id,
        amount=amount,
        kind=kind,
        balance_after=balance_after,
        reference=reference,
        idempotency_key=idempotency_key,
        reservation_id=reservation_id,
    )
    session.add(row)
    await session.flush()
    return row


async def list_transactions(
    session: AsyncSession, user_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[CreditTransaction], int]:
    total = await session.execute(
        select(func.count()).select_from(CreditTransaction).where(CreditTransaction.user_id == user_id)
    )
    rows = await session.execute(
        select(CreditTransaction)
        .where(CreditTransaction.user_id == user_id)
        .order_by(CreditTransaction.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows.scalars()), int(total.scalar_one())


async def ledger_sum(session: AsyncSession, user_id: uuid.UUID) -> int:
    result = await session.execute(
        select(func.coalesce(func.sum(CreditTransaction.amount), 0)).where(
            CreditTransaction.user_id == user_id
        )
    )
    return int(result.scalar_one())


async def insert_reservation(session: AsyncSession, values: dict[str, Any]) -> uuid.UUID | None:
    """Insert unless this user already has a reservation with this idempotency key."""
    result = await session.execute(
        insert(CreditReservation)
        .values(**values)
        .on_conflict_do_nothing(constraint="uq_credit_reservation_user_key")
        .returning(CreditReservation.id)
    )
    return result.scalar_one_or_none()


async def get_reservation(
    session: AsyncSession, reservation_id: uuid.UUID, *, for_update: bool = False
) -> CreditReservation | None:
    query = select(CreditReservation).where(CreditReservation.id == reservation_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query.execution_options(populate_existing=True))).scalar_one_or_none()


async def get_reservation_by_key(
    session: AsyncSession, user_id: uuid.UUID, idempotency_key: str
) -> CreditReservation | None:
    query = select(CreditReservation).where(
        CreditReservation.user_id == user_id, CreditReservation.idempotency_key == idempotency_key
    )
    return (await session.execute(query)).scalar_one_or_none()


async def lock_due_reservations(session: AsyncSession, now: datetime, limit: int) -> list[CreditReservation]:
    """Held reservations past their expiry, locked; rows another worker holds are skipped."""
    query = (
        select(CreditReservation)
        .where(CreditReservation.status == "held", CreditReservation.expires_at < now)
        .order_by(CreditReservation.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await session.execute(query)).scalars())
