"""Request-scoped dependencies: auth context, client IP, and the caller's own account (or admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response

from app.models import User
from app.services import users as user_service
from app.services.auth import AuthContext
from chat_common.auth import CurrentUser
from chat_common.database import ReadSessionDep, SessionDep


async def get_auth_context(request: Request) -> AuthContext:
    """Async on purpose: FastAPI runs plain-def dependencies in a thread pool."""
    return request.app.state.auth  # type: ignore[no-any-return]


AuthDep = Annotated[AuthContext, Depends(get_auth_context)]


async def get_client_ip(request: Request) -> str:
    """The peer's address (the per-IP login limits key on it)."""
    return request.client.host if request.client else "unknown"


ClientIP = Annotated[str, Depends(get_client_ip)]


async def no_store(response: Response) -> None:
    """A response carrying tokens must not be cached by anything on the way (RFC 6749 5.1)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"


NoStore = Depends(no_store)
NO_STORE_HEADERS = {
    "Cache-Control": {"description": "`no-store`: tokens are never cached", "schema": {"type": "string"}},
    "Pragma": {"description": "`no-cache`, for HTTP/1.0 caches", "schema": {"type": "string"}},
}


async def get_me(session: SessionDep, principal: CurrentUser) -> User:
    return await user_service.get_active(session, principal.user_id)


async def read_me(session: ReadSessionDep, principal: CurrentUser) -> User:
    return await user_service.get_active(session, principal.user_id)


async def get_admin(session: SessionDep, principal: CurrentUser) -> User:
    """An admin by the database, not by the token: a demoted admin is 403, a deactivated one 401."""
    return await user_service.get_admin(session, principal.user_id)


Me = Annotated[User, Depends(get_me)]
Admin = Annotated[User, Depends(get_admin)]
MeReadOnly = Annotated[User, Depends(read_me)]
