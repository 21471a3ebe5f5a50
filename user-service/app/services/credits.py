"""Credit rules: signup bonus, admin adjustments, reservations (reserve, commit, release, expire)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import CreditReservation, CreditTransaction
from app.models.base import utcnow
from app.repositories import credits as credit_repo
from app.schemas.credit import ReservationCreate
from chat_common.errors import (
    ConflictError,
    NotFoundError,
    PaymentRequiredError,
    UnprocessableError,
)


async def get_balance(session: AsyncSession, user_id: uuid.UUID) -> int:
    balance = await credit_repo.balance_of(session, user_id)
    if balance is None:
        raise NotFoundError("User not found")
    return balance


async def list_transactions(
    session: AsyncSession, user_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[CreditTransaction], int]:
    return await credit_repo.list_transactions(session, user_id, limit=limit, offset=offset)


async def record_signup_bonus(session: AsyncSession, user_id: uuid.UUID, amount: int) -> None:
    """Ledger row for the credits a new user starts with (the row's balance is set on insert)."""
    await credit_repo.add_transaction(
        session, user_id=user_id, amount=amount, kind="signup_bonus", balance_after=amount
    )


async def adjust(session: AsyncSession, *, user_id: uuid.UUID, amount: int, reason: str) -> CreditTransaction:
    """An admin grant (positive) or deduction (negative); never below zero."""
    if amount == 0:
        raise UnprocessableError("amount must not be zero")
    balance = await credit_repo.adjust_balance(session, user_id, amount)
    if balance is None:
        await session.rollback()
        if await credit_repo.balance_of(session, user_id) is None:
            raise NotFoundError("User not found")
        raise ConflictError("Deduction would make the balance negative", code="insufficient_credits")
    row = await credit_repo.add_transaction(
        session,
        user_id=user_id,
        amount=amount,
        kind="admin_grant" if amount > 0 else "admin_deduct",
        balance_after=balance,
        reference=reason,
    )
    await session.commit()
    return row


async def reserve(
    session: AsyncSession, *, data: ReservationCreate, client_id: str, ttl_seconds: int
) -> tuple[CreditReservation, bool]:
    """Hold credits for a reply. Returns (reservation, created); a repeated key returns the first."""
    try:
        reservation_id = await credit_repo.insert_reservation(
            session,
            {
                "id": uuid.uuid4(),
                "user_id": data.user_id,
                "amount": data.amount,
                "status": "held",
                "idempotency_key": data.idempotency_key,
                "reference": data.reference,
                "client_id": client_id,
                "expires_at": utcnow() + timedelta(seconds=ttl_seconds),
                "created_at": utcnow(),
            },
        )
    except IntegrityError as exc:  # the user does not exist (foreign key)
        await session.rollback()
        raise NotFoundError("User not found") from exc
    if reservation_id is None:
        await session.rollback()
        existing = await credit_repo.get_reservation_by_key(session, data.user_id, data.idempotency_key)
        assert existing is not None
        return existing, False
    balance = await credit_repo.adjust_balance(session, data.user_id, -data.amount)
    if balance is None:
        await session.rollback()
        raise PaymentRequiredError(
            f"Insufficient credits: {data.amount} needed",
            details={"needed": data.amount, "balance": await credit_repo.balance_of(session, data.user_id)},
        )
    await credit_repo.add_transaction(
        session,
        user_id=data.user_id,
        amount=-data.amount,
        kind="reservation",
        balance_after=balance,
        reference=data.reference,
        idempotency_key=data.idempotency_key,
        reservation_id=reservation_id,
    )
    await session.commit()
    reservation = await credit_repo.get_reservation(session, reservation_id)
    assert reservation is not None
    return reservation, True


async def _settle(
    session: AsyncSession, reservation: CreditReservation, *, status: str, charged: int
) -> CreditReservation:
    refund = reservation.amount - charged
    reservation.status = status
    reservation.committed_amount = charged if status == "committed" else None
    reservation.settled_at = utcnow()
    if refund:
        balance = await credit_repo.adjust_balance(session, reservation.user_id, refund)
        assert balance is not None  # adding credits cannot be refused
        await credit_repo.add_transaction(
            session,
            user_id=reservation.user_id,
            amount=refund,
            kind="refund" if status == "committed" else status,
            balance_after=balance,
            reference=reservation.reference,
            reservation_id=reservation.id,
        )
    await session.commit()
    return reservation


async def _locked(session: AsyncSession, reservation_id: uuid.UUID) -> CreditReservation:
    reservation = await credit_repo.get_reservation(session, reservation_id, for_update=True)
    if reservation is None:
        await session.rollback()
        raise NotFoundError("Reservation not found")
    return reservation


async def get_reservation(session: AsyncSession, reservation_id: uuid.UUID) -> CreditReservation:
    reservation = await credit_repo.get_reservation(session, reservation_id)
    if reservation is None:
        raise NotFoundError("Reservation not found")
    return reservation


async def commit(session: AsyncSession, *, reservation_id: uuid.UUID, amount: int) -> CreditReservation:
    """Charge the actual cost (at most the reserved amount) and give back the rest.

    A refusal leaves the transaction to the session's close, which rolls it back.
    """
    reservation = await _locked(session, reservation_id)
    if reservation.status == "committed" and reservation.committed_amount == amount:
        await session.commit()  # nothing changed; ends the transaction and its row lock
        return reservation  # a retried commit
    if reservation.status != "held":
        raise ConflictError(f"Reservation is already {reservation.status}", code="reservation_settled")
    if amount > reservation.amount:
        raise UnprocessableError(
            f"Cannot commit {amount}: only {reservation.amount} reserved", code="amount_exceeds_reservation"
        )
    return await _settle(session, reservation, status="committed", charged=amount)


async def release(session: AsyncSession, *, reservation_id: uuid.UUID) -> CreditReservation:
    """Give every reserved credit back (the generation failed or was cancelled)."""
    reservation = await _locked(session, reservation_id)
    if reservation.status in ("released", "expired"):
        await session.commit()
        return reservation
    if reservation.status != "held":
        raise ConflictError(f"Reservation is already {reservation.status}", code="reservation_settled")
    return await _settle(session, reservation, status="released", charged=0)


async def expire_due(session: AsyncSession, *, batch: int = 100) -> int:
    """Release reservations nobody settled within their TTL; returns how many."""
    due = await credit_repo.lock_due_reservations(session, utcnow(), batch)
    for reservation in due:
        reservation.status = "expired"
        reservation.settled_at = utcnow()
        balance = await credit_repo.adjust_balance(session, reservation.user_id, reservation.amount)
        assert balance is not None
        await credit_repo.add_transaction(
            session,
            user_id=reservation.user_id,
            amount=reservation.amount,
            kind="expired",
            balance_after=balance,
            reference=reservation.reference,
            reservation_id=reservation.id,
        )
    await session.commit()
    return len(due)
