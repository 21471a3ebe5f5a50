"""Registration, OAuth2 password login, refresh, logout and service tokens."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from app.core.deps import NO_STORE_HEADERS, AuthDep, ClientIP, NoStore
from app.schemas.auth import RefreshRequest, ServiceToken, TokenPair
from app.schemas.user import UserCreate, UserPublic
from app.services import auth as auth_service
from chat_common.database import SessionDep
from chat_common.errors import BadRequestError
from chat_common.locations import set_location

router = APIRouter(prefix="/auth", tags=["auth"])
NOT_CACHED: dict[int | str, dict[str, Any]] = {200: {"headers": NO_STORE_HEADERS}}


@router.post("/register", response_model=UserPublic, status_code=status.HTTP_201_CREATED)
async def register(
    data: UserCreate, session: SessionDep, ctx: AuthDep, request: Request, response: Response
) -> UserPublic:
    """Create an account; it starts with `INITIAL_CREDITS` credits. `Location`: the new account."""
    user = await auth_service.register(session, ctx, data)
    set_location(request, response, "read_user", user_id=user.id)
    return UserPublic.model_validate(user)


@router.post("/token", response_model=TokenPair, dependencies=[NoStore], responses=NOT_CACHED)
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    ip: ClientIP,
    session: SessionDep,
    ctx: AuthDep,
) -> TokenPair:
    """OAuth2 password flow: `username` may be the username or the email."""
    return await auth_service.login(
        session, ctx, login=form.username[:320], password=form.password[:1024], ip=ip
    )


@router.post("/refresh", response_model=TokenPair, dependencies=[NoStore], responses=NOT_CACHED)
async def refresh(data: RefreshRequest, session: SessionDep, ctx: AuthDep) -> TokenPair:
    """Exchange a refresh token (JSON `{"refresh_token": "..."}`) for a new pair; the old refresh token
    stops working, and using it again revokes every token of that login."""
    return await auth_service.refresh(session, ctx, data.refresh_token)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(data: RefreshRequest, session: SessionDep) -> None:
    """Revoke the refresh token and every token rotated from the same login."""
    await auth_service.logout(session, data.refresh_token)


@router.post("/service-token", response_model=ServiceToken, dependencies=[NoStore], responses=NOT_CACHED)
async def service_token(
    ctx: AuthDep,
    ip: ClientIP,
    grant_type: Annotated[str, Form()],
    client_id: Annotated[str, Form(max_length=64)],
    client_secret: Annotated[str, Form(max_length=256)],
    scope: Annotated[str, Form(max_length=1024)] = "",
) -> ServiceToken:
    """OAuth2 client credentials for internal services (configured by `SERVICE_CLIENTS`)."""
    if grant_type != "client_credentials":
        raise BadRequestError("grant_type must be client_credentials", code="unsupported_grant_type")
    return await auth_service.service_token(
        ctx, client_id=client_id, client_secret=client_secret, scope=scope, ip=ip
    )
