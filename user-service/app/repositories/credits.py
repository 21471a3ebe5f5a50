"""Credit balance updates, the ledger and reservations; every balance change is one atomic statement."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    DateTime,
    Integer,
    Row,
    Select,
    String,
    Table,
    Uuid,
    bindparam,
    exists,
    func,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import CreditReservation, CreditTransaction, User


async def adjust_balance(
    session: AsyncSession, user_id: uuid.UUID, delta: int, *, ceiling: int | None = None
) -> int | None:
    """Add `delta` unless the balance would drop below zero (or rise above `ceiling`); the new
    balance, or None if refused.

    The row lock taken by UPDATE serialises concurrent changes to one user, and the condition is
    re-checked against the latest row, so the balance can never go negative.
    """
    within = User.credits + delta >= 0
    if ceiling is not None:
        within = within & (User.credits + delta <= ceiling)
    result = await session.execute(
        update(User)
        .where(User.id == user_id, within)
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


# --- Reservations: reserve, commit and release are each ONE statement (data-modifying CTEs), run on an
# autocommit connection, so each is atomic by itself and costs one round trip. All sub-statements of a
# CTE see the snapshot taken when the statement began; what keeps them right under concurrency is the
# row lock each statement takes first (`FOR UPDATE` returns the latest committed row after waiting),
# and every write is chained on the RETURNING of the one before it, so a refusal writes nothing.

_RESERVATION = cast(Table, CreditReservation.__table__)
_LEDGER = cast(Table, CreditTransaction.__table__)
_USER = cast(Table, User.__table__)
RESERVATION_COLUMNS = (
    "id",
    "user_id",
    "amount",
    "committed_amount",
    "status",
    "idempotency_key",
    "reference",
    "client_id",
    "expires_at",
    "created_at",
    "settled_at",
)


def _param(name: str, type_: Any) -> Any:
    # "p_" names: a parameter named like a column would also be taken as a value for that column
    # by the UPDATEs inside the statement.
    return bindparam(f"p_{name}", type_=type_)


def _reserve_statement() -> Select[Any]:
    user_id = _param("user_id", Uuid())
    amount = _param("amount", Integer())
    key = _param("idempotency_key", String())
    reference = _param("reference", String())
    now = _param("now", DateTime(timezone=True))
    r, t, u = _RESERVATION, _LEDGER, _USER
    # The user's row, locked: concurrent reservations for one user queue here and each sees the
    # balance the previous one left.
    owner = select(u.c.id, u.c.credits, u.c.is_active).where(u.c.id == user_id).with_for_update().cte("owner")
    existing = select(r).where(r.c.user_id == user_id, r.c.idempotency_key == key).cte("existing")
    held = (
        insert(r)
        .from_select(
            ["id", "user_id", "amount", "status", "idempotency_key", "reference", "client_id"]
            + ["expires_at", "created_at"],
            select(
                _param("id", Uuid()),
                owner.c.id,
                amount,
                literal_column("'held'", String()),
                key,
                reference,
                _param("client_id", String()),
                _param("expires_at", DateTime(timezone=True)),
                now,
            ).where(owner.c.is_active, owner.c.credits >= amount, ~exists(existing.select())),
        )
        .on_conflict_do_nothing(constraint="uq_credit_reservation_user_key")  # a concurrent twin won
        .returning(r.c.id)
        .cte("held")
    )
    debit = (
        update(u)
        .where(u.c.id == user_id, u.c.credits >= amount, exists(held.select()))
        .values(credits=u.c.credits - amount)
        .returning(u.c.credits)
        .cte("debit")
    )
    entry = (
        insert(t)
        .from_select(
            ["user_id", "amount", "kind", "balance_after", "reference", "idempotency_key"]
            + ["reservation_id", "created_at"],
            select(
                user_id,
                -amount,
                literal_column("'reservation'", String()),
                debit.c.credits,
                reference,
                key,
                held.c.id,
                now,
            )
            .select_from(debit)
            .join(held, true()),
        )
        .returning(t.c.id)
        .cte("entry")
    )
    return (
        select(
            owner.c.credits.label("balance"),
            owner.c.is_active.label("active"),
            select(held.c.id).scalar_subquery().label("held_id"),
            select(entry.c.id).scalar_subquery().label("entry_id"),
            *[existing.c[name] for name in RESERVATION_COLUMNS],
        )
        .select_from(owner)
        .outerjoin(existing, true())
    )


def _settle_statement() -> Select[Any]:
    reservation_id = _param("reservation_id", Uuid())
    client_id = _param("client_id", String())
    charged = _param("charged", Integer())
    now = _param("now", DateTime(timezone=True))
    r, t, u = _RESERVATION, _LEDGER, _USER
    # The reservation, locked and only if this client made it: a concurrent commit or release of it
    # waits here and then sees the status the first one left.
    target = (
        select(*[r.c[name] for name in RESERVATION_COLUMNS])
        .where(r.c.id == reservation_id, r.c.client_id == client_id)
        .with_for_update()
        .cte("target")
    )
    settled = (
        update(r)
        .where(r.c.id == target.c.id, target.c.status == "held", target.c.amount >= charged)
        .values(
            status=_param("status", String()),
            committed_amount=_param("committed_amount", Integer()),
            settled_at=now,
        )
        .returning(r.c.id, r.c.user_id, r.c.amount, r.c.reference)
        .cte("settled")
    )
    refund = settled.c.amount - charged
    credit = (
        update(u)
        .where(u.c.id == settled.c.user_id, refund > 0)
        .values(credits=u.c.credits + refund)
        .returning(u.c.credits)
        .cte("credit")
    )
    entry = (
        insert(t)
        .from_select(
            ["user_id", "amount", "kind", "balance_after", "reference", "reservation_id", "created_at"],
            select(
                settled.c.user_id,
                refund,
                _param("kind", String()),
                credit.c.credits,
                settled.c.reference,
                settled.c.id,
                now,
            )
            .select_from(settled)
            .join(credit, true()),
        )
        .returning(t.c.id)
        .cte("entry")
    )
    return select(
        *[target.c[name] for name in RESERVATION_COLUMNS],
        select(settled.c.id).scalar_subquery().label("settled_id"),
        select(entry.c.id).scalar_subquery().label("entry_id"),
    )


RESERVE = _reserve_statement()
SETTLE = _settle_statement()


async def reserve(session: AsyncSession, values: dict[str, Any], now: datetime) -> Row[Any] | None:
    """Hold `amount` of the user's credits in one statement: reservation, debit and ledger row, or none.

    The row has the user's `balance` (after waiting for its lock), whether the account is `active`
    (an inactive one gets nothing), `held_id` when this call created the reservation, and the columns
    of an earlier reservation with the same key (all None if none was visible). No row: the user does
    not exist.
    """
    params = {f"p_{name}": value for name, value in values.items()}
    params["p_now"] = now
    row: Row[Any] | None = (await session.execute(RESERVE, params)).one_or_none()
    return row


async def settle(
    session: AsyncSession,
    *,
    reservation_id: uuid.UUID,
    client_id: str,
    status: str,
    charged: int,
    kind: str,
    now: datetime,
) -> Row[Any] | None:
    """Settle a held reservation of this client in one statement: status, refund of the uncharged part
    to the balance and its ledger row. The row has the reservation as it was before (locked) and
    `settled_id` when this call settled it; no row: no such reservation of this client."""
    params = {
        "p_reservation_id": reservation_id,
        "p_client_id": client_id,
        "p_status": status,
        "p_committed_amount": charged if status == "committed" else None,
        "p_charged": charged,
        "p_kind": kind,
        "p_now": now,
    }
    row: Row[Any] | None = (await session.execute(SETTLE, params)).one_or_none()
    return row


_BY_ID = select(*[_RESERVATION.c[name] for name in RESERVATION_COLUMNS]).where(
    _RESERVATION.c.id == bindparam("reservation_id"), _RESERVATION.c.client_id == bindparam("client_id")
)
_BY_KEY = select(*[_RESERVATION.c[name] for name in RESERVATION_COLUMNS]).where(
    _RESERVATION.c.user_id == bindparam("user_id"), _RESERVATION.c.idempotency_key == bindparam("key")
)


async def get_reservation(
    session: AsyncSession, reservation_id: uuid.UUID, client_id: str
) -> Row[Any] | None:
    """The reservation, if this service client made it."""
    params = {"reservation_id": reservation_id, "client_id": client_id}
    return (await session.execute(_BY_ID, params)).one_or_none()


async def get_reservation_by_key(session: AsyncSession, user_id: uuid.UUID, key: str) -> Row[Any] | None:
    return (await session.execute(_BY_KEY, {"user_id": user_id, "key": key})).one_or_none()


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


async def held_reservations(
    session: AsyncSession, client_id: str, created_before: datetime, *, limit: int, offset: int
) -> tuple[list[CreditReservation], int]:
    """This client's reservations still held that were made before `created_before`, oldest first."""
    where = (
        CreditReservation.status == "held",
        CreditReservation.client_id == client_id,
        CreditReservation.created_at < created_before,
    )
    total = await session.execute(select(func.count()).select_from(CreditReservation).where(*where))
    rows = await session.execute(
        select(CreditReservation)
        .where(*where)
        .order_by(CreditReservation.created_at, CreditReservation.id)
        .limit(limit)
        .offset(offset)
    )
    return list(rows.scalars()), int(total.scalar_one())
