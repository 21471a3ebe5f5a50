"""Request-scoped dependencies: database session, auth context, the caller's own account."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import User
from app.schemas.common import MAX_LIMIT
from app.services import users as user_service
from app.services.auth import AuthContext
from chat_common.auth import CurrentUser


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.read_sessionmaker() as session:
        yield session


async def get_auth_context(request: Request) -> AuthContext:
    """Async on purpose: FastAPI runs plain-def dependencies in a thread pool."""
    return request.app.state.auth  # type: ignore[no-any-return]


SessionDep = Annotated[AsyncSession, Depends(get_session)]
ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session)]
AuthDep = Annotated[AuthContext, Depends(get_auth_context)]


async def get_me(session: SessionDep, principal: CurrentUser) -> User:
    return await user_service.get_active(session, principal.user_id)


async def read_me(session: ReadSessionDep, principal: CurrentUser) -> User:
    return await user_service.get_active(session, principal.user_id)


Me = Annotated[User, Depends(get_me)]
MeReadOnly = Annotated[User, Depends(read_me)]


@dataclass(frozen=True)
class Pagination:
    limit: int
    offset: int


async def get_pagination(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Pagination:
    return Pagination(limit=limit, offset=offset)


PageDep = Annotated[Pagination, Depends(get_pagination)]
