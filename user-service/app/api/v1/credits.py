"""Credit balance and ledger for users; reservations for services holding `credits:write`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from app.schemas.credit import (
    Balance,
    ReservationCommit,
    ReservationCreate,
    ReservationPublic,
    TransactionPublic,
)
from app.services import credits as credit_service
from chat_common.auth import CurrentUser, Principal, require_scopes
from chat_common.database import ReadSessionDep, SessionDep
from chat_common.pagination import Page, PageDep

router = APIRouter(prefix="/credits", tags=["credits"])

CreditWriter = Annotated[Principal, Depends(require_scopes("credits:write"))]


@router.get("", response_model=Balance)
async def balance(user: CurrentUser, session: ReadSessionDep) -> Balance:
    user_id = uuid.UUID(user.user_id)
    return Balance(user_id=user_id, balance=await credit_service.get_balance(session, user_id))


@router.get("/transactions", response_model=Page[TransactionPublic])
async def transactions(user: CurrentUser, session: ReadSessionDep, page: PageDep) -> Page[TransactionPublic]:
    """The caller's ledger, newest first."""
    rows, total = await credit_service.list_transactions(
        session, uuid.UUID(user.user_id), limit=page.limit, offset=page.offset
    )
    return Page.of([TransactionPublic.model_validate(r) for r in rows], total, page)


@router.post(
    "/reservations",
    response_model=ReservationPublic,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "Idempotent replay: the first reservation with this key"}},
)
async def reserve(
    data: ReservationCreate,
    service: CreditWriter,
    session: SessionDep,
    request: Request,
    response: Response,
) -> ReservationPublic:
    """Hold credits before generating; the same idempotency key never charges twice."""
    ttl = request.app.state.settings.reservation_ttl_seconds
    client_id = service.subject.removeprefix("service:")
    reservation, created = await credit_service.reserve(
        session, data=data, client_id=client_id, ttl_seconds=ttl
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return ReservationPublic.model_validate(reservation)


@router.get("/reservations/{reservation_id}", response_model=ReservationPublic)
async def get_reservation(
    reservation_id: uuid.UUID, _: CreditWriter, session: SessionDep
) -> ReservationPublic:
    return ReservationPublic.model_validate(await credit_service.get_reservation(session, reservation_id))


@router.post("/reservations/{reservation_id}/commit", response_model=ReservationPublic)
async def commit(
    reservation_id: uuid.UUID, data: ReservationCommit, _: CreditWriter, session: SessionDep
) -> ReservationPublic:
    """Charge the actual cost (at most what was reserved); the rest goes back to the user."""
    reservation = await credit_service.commit(session, reservation_id=reservation_id, amount=data.amount)
    return ReservationPublic.model_validate(reservation)


@router.post("/reservations/{reservation_id}/release", response_model=ReservationPublic)
async def release(reservation_id: uuid.UUID, _: CreditWriter, session: SessionDep) -> ReservationPublic:
    """Give every reserved credit back (generation failed or was cancelled)."""
    reservation = await credit_service.release(session, reservation_id=reservation_id)
    return ReservationPublic.model_validate(reservation)
