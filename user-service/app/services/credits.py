"""Credit rules: signup bonus, admin adjustments, reservations (reserve, commit, release, expire)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import CreditTransaction
from app.models.base import utcnow
from app.repositories import credits as credit_repo
from app.repositories.credits import RESERVATION_COLUMNS
from app.schemas.credit import MAX_BALANCE, ReservationCreate, ReservationPublic
from chat_common.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    PaymentRequiredError,
    UnprocessableError,
)


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
    """An admin grant (positive) or deduction (negative); never below zero nor above MAX_BALANCE."""
    if amount == 0:
        raise UnprocessableError("amount must not be zero")
    balance = await credit_repo.adjust_balance(session, user_id, amount, ceiling=MAX_BALANCE)
    if balance is None:
        await session.rollback()
        current = await credit_repo.balance_of(session, user_id)
        if current is None:
            raise NotFoundError("User not found")
        if amount > 0:
            raise ConflictError(
                f"A balance cannot exceed {MAX_BALANCE} credits",
                code="balance_limit",
                details={"balance": current, "max_balance": MAX_BALANCE},
            )
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


def _reservation(row: Row[Any], **changes: Any) -> ReservationPublic:
    return ReservationPublic.model_validate({**{n: row._mapping[n] for n in RESERVATION_COLUMNS}, **changes})


def reservation_ttl(requested: int | None, *, default: int, maximum: int) -> int:
    """The lifetime the reserving client asked for (at most `maximum`), else `default`."""
    if requested is None:
        return default
    if requested > maximum:
        raise UnprocessableError(
            f"ttl_seconds must be at most {maximum}",
            details=[
                {
                    "loc": ["body", "ttl_seconds"],
                    "msg": f"Input should be less than or equal to {maximum}",
                    "type": "less_than_equal",
                }
            ],
        )
    return requested


async def reserve(
    session: AsyncSession, *, data: ReservationCreate, client_id: str, ttl_seconds: int
) -> tuple[ReservationPublic, bool]:
    """Hold credits for a reply in one statement. Returns (reservation, created); a repeated key with
    the same amount returns the first reservation. An inactive account gets none (403). `session` is
    an autocommit session: the statement is atomic alone."""
    now = utcnow()
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "user_id": data.user_id,
        "amount": data.amount,
        "idempotency_key": data.idempotency_key,
        "reference": data.reference,
        "client_id": client_id,
        "expires_at": now + timedelta(seconds=ttl_seconds),
        "created_at": now,
    }
    row = await credit_repo.reserve(session, values, now)
    if row is None:
        raise NotFoundError("User not found")
    if not row.active:
        raise ForbiddenError(
            "This account is deactivated: no credits can be reserved", code="account_inactive"
        )
    if row.held_id is not None:
        created = {**values, "status": "held", "committed_amount": None, "settled_at": None}
        return ReservationPublic.model_validate(created), True
    existing: Row[Any] | None = row if row.id is not None else None
    if existing is None:  # a concurrent twin may have taken the key after this statement's snapshot
        existing = await credit_repo.get_reservation_by_key(session, data.user_id, data.idempotency_key)
    if existing is None:
        raise PaymentRequiredError(
            f"Insufficient credits: {data.amount} needed",
            details={"needed": data.amount, "balance": row.balance},
        )
    if existing.client_id != client_id:
        raise ConflictError(
            "This idempotency key is already used by another client's reservation",
            code="idempotency_key_in_use",
        )
    if existing.amount != data.amount:
        raise ConflictError(
            f"This idempotency key already holds a reservation of {existing.amount}, not {data.amount}",
            code="idempotency_key_in_use",
            details={"reserved": existing.amount, "requested": data.amount},
        )
    return _reservation(existing), False


async def get_reservation(
    session: AsyncSession, reservation_id: uuid.UUID, *, client_id: str
) -> ReservationPublic:
    """A reservation, visible only to the service client that made it."""
    row = await credit_repo.get_reservation(session, reservation_id, client_id)
    if row is None:
        raise NotFoundError("Reservation not found")
    return _reservation(row)


async def list_held(
    session: AsyncSession, *, client_id: str, older_than_seconds: int, limit: int, offset: int
) -> tuple[list[ReservationPublic], int]:
    """This client's reservations still held, made at least `older_than_seconds` ago (by this
    service's clock, so the caller's clock does not matter): what it may have lost track of."""
    created_before = utcnow() - timedelta(seconds=older_than_seconds)
    rows, total = await credit_repo.held_reservations(
        session, client_id, created_before, limit=limit, offset=offset
    )
    return [ReservationPublic.model_validate(row) for row in rows], total


async def _settle(
    session: AsyncSession, *, reservation_id: uuid.UUID, client_id: str, status: str, charged: int
) -> tuple[Row[Any], ReservationPublic | None]:
    """(the reservation as it was, the settled reservation if this call settled it)."""
    now = utcnow()
    row = await credit_repo.settle(
        session,
        reservation_id=reservation_id,
        client_id=client_id,
        status=status,
        charged=charged,
        kind="refund" if status == "committed" else status,
        now=now,
    )
    if row is None:
        raise NotFoundError("Reservation not found")
    if row.settled_id is None:
        return row, None
    committed_amount = charged if status == "committed" else None
    return row, _reservation(row, status=status, committed_amount=committed_amount, settled_at=now)


async def commit(
    session: AsyncSession, *, reservation_id: uuid.UUID, client_id: str, amount: int
) -> ReservationPublic:
    """Charge the actual cost (at most the reserved amount) and give back the rest, in one statement."""
    row, settled = await _settle(
        session, reservation_id=reservation_id, client_id=client_id, status="committed", charged=amount
    )
    if settled is not None:
        return settled
    if row.status == "committed" and row.committed_amount == amount:
        return _reservation(row)  # a retried commit
    if row.status != "held":
        raise ConflictError(
            f"Reservation is already {row.status}", code="reservation_settled", details={"status": row.status}
        )
    raise UnprocessableError(
        f"Cannot commit {amount}: only {row.amount} reserved", code="amount_exceeds_reservation"
    )


async def release(session: AsyncSession, *, reservation_id: uuid.UUID, client_id: str) -> ReservationPublic:
    """Give every reserved credit back (the generation failed or was cancelled), in one statement."""
    row, settled = await _settle(
        session, reservation_id=reservation_id, client_id=client_id, status="released", charged=0
    )
    if settled is not None:
        return settled
    if row.status in ("released", "expired"):
        return _reservation(row)
    raise ConflictError(
        f"Reservation is already {row.status}", code="reservation_settled", details={"status": row.status}
    )


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
