"""Character CRUD, the public catalogue, the caller's own characters, and metadata."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response, status

from app.core.deps import SettingsDep
from app.schemas.character import (
    CharacterCreate,
    CharacterPublic,
    CharacterSummary,
    CharacterUpdate,
    SortOrder,
)
from app.services import characters as character_service
from chat_common.auth import CurrentPrincipal, CurrentUser
from chat_common.database import ReadSessionDep, SessionDep
from chat_common.errors import UnprocessableError
from chat_common.locations import set_location
from chat_common.pagination import Page, PageDep

router = APIRouter(prefix="/characters", tags=["characters"])

# What a user gets for changing a character they can see but do not own (one they cannot see is 404).
NOT_OWNER: dict[int | str, dict[str, Any]] = {
    403: {"description": "Only the owner or an admin can change this character"}
}


MAX_TAG_FILTERS = 10
TAGS_DOC = (
    "Characters having **all** of these tags (AND; matched exactly, case included). Repeat the "
    f"parameter (`tags=elf&tags=mage`), separate with commas (`tags=elf,mage`), or both; at most "
    f"{MAX_TAG_FILTERS} tags."
)
CREATOR_DOC = (
    "The card's free-text `creator` field (its author's name as written on the card, e.g. from an "
    "imported card), matched whole, case-insensitively. Not the account that owns the character: "
    "that is `owner_id`."
)
OWNER_DOC = (
    "Characters owned by this user account (its id, as in a character's `owner_id`): its public ones, "
    "or every visibility when it is the caller's own id."
)
MINE_DOC = "Only the caller's own characters, every visibility (as `owner_id` = the caller's id); users only."


def tag_filters(tags: list[str]) -> list[str]:
    """Repeated and comma-separated `tags` as one list: split, stripped, blanks and repeats dropped."""
    parts = [part.strip() for tag in tags for part in tag.split(",")]
    wanted = list(dict.fromkeys(part for part in parts if part))
    if len(wanted) > MAX_TAG_FILTERS:
        raise UnprocessableError(
            f"at most {MAX_TAG_FILTERS} tags can be filtered on",
            details={"field": "tags", "given": len(wanted)},
        )
    return wanted


@router.get("", response_model=Page[CharacterSummary])
async def catalogue(
    caller: CurrentPrincipal,
    session: ReadSessionDep,
    page: PageDep,
    q: Annotated[str | None, Query(max_length=200, description="Words in name, tags, description")] = None,
    tags: Annotated[list[str], Query(max_length=MAX_TAG_FILTERS, description=TAGS_DOC)] = [],  # noqa: B006
    creator: Annotated[str | None, Query(max_length=200, description=CREATOR_DOC)] = None,
    owner_id: Annotated[uuid.UUID | None, Query(description=OWNER_DOC)] = None,
    mine: Annotated[bool, Query(description=MINE_DOC)] = False,
    sort: Annotated[SortOrder | None, Query(description="Default: relevance with q, else newest")] = None,
) -> Page[CharacterSummary]:
    """Public characters, searched and ranked (a name match ranks above a description match); others'
    private and unlisted characters are never listed, the caller's own are with `mine` or `owner_id`."""
    rows, total = await character_service.catalogue(
        session,
        caller,
        q=q,
        tags=tag_filters(tags),
        creator=creator,
        owner_id=owner_id,
        mine=mine,
        sort=sort,
        limit=page.limit,
        offset=page.offset,
    )
    return Page.of([CharacterSummary.model_validate(row) for row in rows], total, page)


@router.get("/mine", response_model=Page[CharacterSummary])
async def mine(
    user: CurrentUser, session: ReadSessionDep, page: PageDep, sort: SortOrder = "newest"
) -> Page[CharacterSummary]:
    """The caller's own characters, every visibility."""
    rows, total = await character_service.owned_by(
        session, uuid.UUID(user.subject), sort=sort, limit=page.limit, offset=page.offset
    )
    return Page.of([CharacterSummary.model_validate(row) for row in rows], total, page)


@router.post("", response_model=CharacterPublic, status_code=status.HTTP_201_CREATED)
async def create(
    data: CharacterCreate,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
    response: Response,
) -> CharacterPublic:
    """`Location`: the new character."""
    character = await character_service.create(
        session, user, data, metadata_limit=settings.metadata_max_bytes
    )
    set_location(request, response, "read", character_id=character.id)
    return CharacterPublic.model_validate(character)


@router.get("/{character_id}", response_model=CharacterPublic)
async def read(character_id: uuid.UUID, caller: CurrentPrincipal, session: ReadSessionDep) -> CharacterPublic:
    """Public and unlisted characters for anyone signed in; private ones for their owner and admins
    (404 for other users) and for services holding `characters:read_private` (403 without)."""
    return CharacterPublic.model_validate(await character_service.get_visible(session, caller, character_id))


@router.patch("/{character_id}", response_model=CharacterPublic, responses=NOT_OWNER)
async def patch(
    character_id: uuid.UUID,
    data: CharacterUpdate,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
) -> CharacterPublic:
    character = await character_service.update(
        session, user, character_id, data, partial=True, metadata_limit=settings.metadata_max_bytes
    )
    return CharacterPublic.model_validate(character)


@router.put("/{character_id}", response_model=CharacterPublic, responses=NOT_OWNER)
async def replace(
    character_id: uuid.UUID,
    data: CharacterCreate,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
) -> CharacterPublic:
    character = await character_service.update(
        session, user, character_id, data, partial=False, metadata_limit=settings.metadata_max_bytes
    )
    return CharacterPublic.model_validate(character)


@router.delete("/{character_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_OWNER)
async def delete(character_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> None:
    """Soft delete: the character disappears from every read."""
    await character_service.delete(session, user, character_id)


@router.get("/{character_id}/metadata", response_model=dict[str, Any])
async def read_metadata(
    character_id: uuid.UUID, caller: CurrentPrincipal, session: ReadSessionDep
) -> dict[str, Any]:
    return (await character_service.get_visible(session, caller, character_id)).meta


@router.put("/{character_id}/metadata", response_model=dict[str, Any], responses=NOT_OWNER)
async def replace_metadata(
    character_id: uuid.UUID,
    metadata: Annotated[dict[str, Any], Body()],
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    return await character_service.set_metadata(
        session, user, character_id, metadata, merge=False, limit=settings.metadata_max_bytes
    )


@router.patch(
    "/{character_id}/metadata",
    response_model=dict[str, Any],
    responses=NOT_OWNER,
    openapi_extra={
        "requestBody": {"content": {"application/merge-patch+json": {"schema": {"type": "object"}}}}
    },
)
async def merge_metadata(
    character_id: uuid.UUID,
    patch: Annotated[dict[str, Any], Body()],
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """JSON merge patch (RFC 7386): nested objects merge, `null` removes a key."""
    return await character_service.set_metadata(
        session, user, character_id, patch, merge=True, limit=settings.metadata_max_bytes
    )
