"""The caller's own account."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from app.core.deps import AuthDep, ClientIP, Me, MeReadOnly
from app.schemas.user import PasswordChange, UserPublic, UserUpdate
from app.services import users as user_service
from chat_common.auth import CurrentUser
from chat_common.database import ReadSessionDep, SessionDep

router = APIRouter(prefix="/users", tags=["users"])


@router.get("/me", response_model=UserPublic)
async def read_me(me: MeReadOnly) -> UserPublic:
    return UserPublic.model_validate(me)


@router.patch("/me", response_model=UserPublic)
async def update_me(data: UserUpdate, me: Me, session: SessionDep) -> UserPublic:
    return UserPublic.model_validate(await user_service.update_profile(session, me, data))


@router.post("/me/password", status_code=status.HTTP_204_NO_CONTENT)
async def change_password(
    data: PasswordChange, me: Me, session: SessionDep, ctx: AuthDep, ip: ClientIP
) -> None:
    """Change the password; every refresh token of the account is revoked.

    Wrong current passwords count against the same limits as failed logins (429 past them).
    """
    await user_service.change_password(
        session, hasher=ctx.hasher, limiter=ctx.limiter, user=me, data=data, ip=ip
    )


@router.delete("/me", status_code=status.HTTP_204_NO_CONTENT)
async def deactivate_me(me: Me, session: SessionDep) -> None:
    """Deactivate the account: no more logins, refresh tokens revoked."""
    await user_service.deactivate(session, me)


@router.get("/{user_id}", response_model=UserPublic)
async def read_user(user_id: uuid.UUID, caller: CurrentUser, session: ReadSessionDep) -> UserPublic:
    """A user reads only themself (anyone else is 404); admins read anyone."""
    return UserPublic.model_validate(await user_service.get_visible(session, caller, user_id))
