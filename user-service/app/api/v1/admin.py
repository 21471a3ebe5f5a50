"""Administration of users and their credits; the caller's admin role is read from the database."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from app.core.deps import Admin
from app.schemas.credit import CreditAdjustment, TransactionPublic
from app.schemas.user import AdminUserUpdate, Role, UserPublic
from app.services import credits as credit_service
from app.services import users as user_service
from chat_common.database import SessionDep
from chat_common.pagination import Page, PageDep

router = APIRouter(
    prefix="/admin/users",
    tags=["admin"],
    responses={403: {"description": "The caller is not an admin (by the database, not the token)"}},
)


@router.get("", response_model=Page[UserPublic])
async def list_users(
    _: Admin,
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
async def get_user(user_id: uuid.UUID, _: Admin, session: SessionDep) -> UserPublic:
    return UserPublic.model_validate(await user_service.get_user(session, user_id))


@router.patch("/{user_id}", response_model=UserPublic)
async def update_user(
    user_id: uuid.UUID, data: AdminUserUpdate, admin: Admin, session: SessionDep
) -> UserPublic:
    """Change the role or (de)activate; deactivation revokes the user's refresh tokens.

    The last active admin cannot be demoted or deactivated (409 `last_admin`).
    """
    return UserPublic.model_validate(await user_service.admin_update(session, admin, user_id, data))


@router.post("/{user_id}/credits", response_model=TransactionPublic, status_code=status.HTTP_201_CREATED)
async def adjust_credits(
    user_id: uuid.UUID, data: CreditAdjustment, _: Admin, session: SessionDep
) -> TransactionPublic:
    """Grant (positive) or deduct (negative) credits with a reason; never below zero."""
    row = await credit_service.adjust(session, user_id=user_id, amount=data.amount, reason=data.reason)
    return TransactionPublic.model_validate(row)
