"""Administration of users and their credits."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from app.schemas.credit import CreditAdjustment, TransactionPublic
from app.schemas.user import AdminUserUpdate, Role, UserPublic
from app.services import credits as credit_service
from app.services import users as user_service
from chat_common.auth import CurrentAdmin
from chat_common.database import SessionDep
from chat_common.pagination import Page, PageDep

router = APIRouter(prefix="/admin/users", tags=["admin"])


@router.get("", response_model=Page[UserPublic])
async def list_users(
    _: CurrentAdmin,
    session: SessionDep,
    page: PageDep,
    q: Annotated[str | None, Query(max_length=100, description="Search email, username, name")] = None,
    role: Role | None = None,
    is_active: bool | None = None,
) -> Page[UserPublic]:
    users, total = await user_service.search(
        session, q=q, role=role, is_active=is_active, limit=page.limit, offset=page.offset
    )
    return Page.of([UserPublic.model_validate(u) for u in users], total, page)


@router.get("/{user_id}", response_model=UserPublic)
async def get_user(user_id: uuid.UUID, admin: CurrentAdmin, session: SessionDep) -> UserPublic:
    return UserPublic.model_validate(await user_service.get_visible(session, admin, user_id))


@router.patch("/{user_id}", response_model=UserPublic)
async def update_user(
    user_id: uuid.UUID, data: AdminUserUpdate, _: CurrentAdmin, session: SessionDep
) -> UserPublic:
    """Change the role or (de)activate; deactivation revokes the user's refresh tokens."""
    return UserPublic.model_validate(await user_service.admin_update(session, user_id, data))


@router.post("/{user_id}/credits", response_model=TransactionPublic, status_code=status.HTTP_201_CREATED)
async def adjust_credits(
    user_id: uuid.UUID, data: CreditAdjustment, _: CurrentAdmin, session: SessionDep
) -> TransactionPublic:
    """Grant (positive) or deduct (negative) credits with a reason; never below zero."""
    row = await credit_service.adjust(session, user_id=user_id, amount=data.amount, reason=data.reason)
    return TransactionPublic.model_validate(row)
