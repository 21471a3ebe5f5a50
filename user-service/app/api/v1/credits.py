"""Credit balance and ledger for users; reservations for services holding `credits:write`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from app.core.deps import MeReadOnly
from app.schemas.credit import (
    Balance,
    ReservationCommit,
    ReservationCreate,
    ReservationPublic,
    TransactionPublic,
)
from app.services import credits as credit_service
from chat_common.auth import Principal, require_scopes
from chat_common.database import ReadSessionDep
from chat_common.locations import set_location
from chat_common.pagination import Page, PageDep

router = APIRouter(prefix="/credits", tags=["credits"])

CreditWriter = Annotated[Principal, Depends(require_scopes("credits:write"))]


@router.get("", response_model=Balance)
async def balance(me: MeReadOnly) -> Balance:
    """The caller's balance (a deactivated account's token gets 401 `account_inactive`)."""
    return Balance(user_id=me.id, balance=me.credits)


@router.get("/transactions", response_model=Page[TransactionPublic])
async def transactions(me: MeReadOnly, session: ReadSessionDep, page: PageDep) -> Page[TransactionPublic]:
    """The caller's ledger, newest first."""
    rows, total = await credit_service.list_transactions(session, me.id, limit=page.limit, offset=page.offset)
    return Page.of([TransactionPublic.model_validate(r) for r in rows], total, page)


# Reservations run on the autocommit session: reserve, commit and release are one atomic statement
# each (see app/repositories/credits.py), so a transaction around them would only add round trips.
# A reservation belongs to the service client that made it: to any other it does not exist (404).
AutocommitSessionDep = ReadSessionDep
MAX_AGE_SECONDS = 366 * 86_400


def _client_id(service: Principal) -> str:
    return service.subject.removeprefix("service:")


@router.post(
    "/reservations",
    response_model=ReservationPublic,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "Idempotent replay: the first reservation with this key"},
        402: {"description": "Insufficient credits (details: needed, balance)"},
        403: {
            "description": "The account is deactivated (code account_inactive), or the caller is not a "
            "service holding credits:write"
        },
        409: {"description": "The key is already used by another client, or for another amount"},
        422: {"description": "Invalid body, e.g. ttl_seconds above MAX_RESERVATION_TTL_SECONDS"},
    },
)
async def reserve(
    data: ReservationCreate,
    service: CreditWriter,
    session: AutocommitSessionDep,
    request: Request,
    response: Response,
) -> ReservationPublic:
    """Hold credits before generating; the same idempotency key never charges twice. The hold expires
    after `ttl_seconds` (default RESERVATION_TTL_SECONDS) unless committed or released first."""
    settings = request.app.state.settings
    ttl = credit_service.reservation_ttl(
        data.ttl_seconds,
        default=settings.reservation_ttl_seconds,
        maximum=settings.max_reservation_ttl_seconds,
    )
    reservation, created = await credit_service.reserve(
        session, data=data, client_id=_client_id(service), ttl_seconds=ttl
    )
    if created:
        set_location(request, response, "get_reservation", reservation_id=reservation.id)
    else:
        response.status_code = status.HTTP_200_OK
    return reservation


@router.get("/reservations", response_model=Page[ReservationPublic])
async def held_reservations(
    service: CreditWriter,
    session: AutocommitSessionDep,
    page: PageDep,
    older_than_seconds: Annotated[
        int, Query(ge=0, le=MAX_AGE_SECONDS, description="Only those made at least this long ago")
    ] = 0,
) -> Page[ReservationPublic]:
    """The calling service's reservations still held, oldest first: a service that may have lost
    track of some (killed between reserving and recording what it reserved for) finds and releases
    them long before they expire."""
    items, total = await credit_service.list_held(
        session,
        client_id=_client_id(service),
        older_than_seconds=older_than_seconds,
        limit=page.limit,
        offset=page.offset,
    )
    return Page.of(items, total, page)


@router.get("/reservations/{reservation_id}", response_model=ReservationPublic)
async def get_reservation(
    reservation_id: uuid.UUID, service: CreditWriter, session: AutocommitSessionDep
) -> ReservationPublic:
    return await credit_service.get_reservation(session, reservation_id, client_id=_client_id(service))


@router.post("/reservations/{reservation_id}/commit", response_model=ReservationPublic)
async def commit(
    reservation_id: uuid.UUID, data: ReservationCommit, service: CreditWriter, session: AutocommitSessionDep
) -> ReservationPublic:
    """Charge the actual cost (at most what was reserved); the rest goes back to the user."""
    return await credit_service.commit(
        session, reservation_id=reservation_id, client_id=_client_id(service), amount=data.amount
    )


@router.post("/reservations/{reservation_id}/release", response_model=ReservationPublic)
async def release(
    reservation_id: uuid.UUID, service: CreditWriter, session: AutocommitSessionDep
) -> ReservationPublic:
    """Give every reserved credit back (generation failed or was cancelled)."""
    return await credit_service.release(session, reservation_id=reservation_id, client_id=_client_id(service))
