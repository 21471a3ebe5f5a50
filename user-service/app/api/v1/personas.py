"""The caller's personas, and their read for conversation-service (service token, `personas:read`)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from app.core.deps import Me, MeReadOnly
from app.schemas.persona import PersonaCreate, PersonaForService, PersonaPublic, PersonaUpdate
from app.services import personas as persona_service
from chat_common.auth import Principal, require_scopes
from chat_common.database import ReadSessionDep, SessionDep
from chat_common.locations import set_location
from chat_common.pagination import Page, PageDep

router = APIRouter(prefix="/users/me/personas", tags=["personas"])
internal_router = APIRouter(prefix="/internal/users/{user_id}/personas", tags=["internal"])

PersonaReader = Annotated[Principal, Depends(require_scopes("personas:read"))]


@router.get("", response_model=Page[PersonaPublic])
async def list_personas(me: MeReadOnly, session: ReadSessionDep, page: PageDep) -> Page[PersonaPublic]:
    """The caller's personas: the default first, then the oldest."""
    rows, total = await persona_service.list_own(session, me, limit=page.limit, offset=page.offset)
    return Page.of([PersonaPublic.model_validate(p) for p in rows], total, page)


@router.post(
    "",
    response_model=PersonaPublic,
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "The user already has MAX_PERSONAS_PER_USER personas (persona_limit)"}},
)
async def create_persona(
    data: PersonaCreate, me: Me, session: SessionDep, request: Request, response: Response
) -> PersonaPublic:
    """`Location`: the new persona."""
    limit = request.app.state.settings.max_personas_per_user
    persona = await persona_service.create(session, me, data, limit=limit)
    set_location(request, response, "read_persona", persona_id=persona.id)
    return PersonaPublic.model_validate(persona)


@router.get("/{persona_id}", response_model=PersonaPublic)
async def read_persona(persona_id: uuid.UUID, me: MeReadOnly, session: ReadSessionDep) -> PersonaPublic:
    return PersonaPublic.model_validate(await persona_service.get_owned(session, me, persona_id))


@router.patch("/{persona_id}", response_model=PersonaPublic)
async def update_persona(
    persona_id: uuid.UUID, data: PersonaUpdate, me: Me, session: SessionDep
) -> PersonaPublic:
    return PersonaPublic.model_validate(await persona_service.update(session, me, persona_id, data))


@router.delete("/{persona_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_persona(persona_id: uuid.UUID, me: Me, session: SessionDep) -> None:
    """Deleting the default leaves the caller with no default persona."""
    await persona_service.delete(session, me, persona_id)


# `/default` is declared before `/{persona_id}`, which would read it as a (malformed) id.
@internal_router.get("/default", response_model=PersonaForService)
async def read_default_for_service(
    user_id: uuid.UUID, _: PersonaReader, session: ReadSessionDep
) -> PersonaForService:
    """The user's default persona; 404 `persona_not_found` with `details.user_display_name` when none,
    404 `user_not_found` for an unknown or deactivated user."""
    return await persona_service.read_default_for_service(session, user_id)


@internal_router.get("/{persona_id}", response_model=PersonaForService)
async def read_for_service(
    user_id: uuid.UUID, persona_id: uuid.UUID, _: PersonaReader, session: ReadSessionDep
) -> PersonaForService:
    return await persona_service.read_for_service(session, user_id, persona_id)
