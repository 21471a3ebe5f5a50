"""Character Card V2 import (JSON or PNG) and export, and the stored avatar."""

from __future__ import annotations

import re
import unicodedata
import uuid
from functools import partial
from typing import Annotated, Any, Literal
from urllib.parse import quote

import anyio
from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile, status
from fastapi.responses import JSONResponse

from app.core.deps import SettingsDep
from app.schemas.character import CharacterPublic, Visibility
from app.services import cards
from app.services import characters as character_service
from chat_common.auth import CurrentPrincipal, CurrentUser
from chat_common.database import ReadSessionDep, SessionDep
from chat_common.errors import NotFoundError, PayloadTooLargeError
from chat_common.locations import set_location

router = APIRouter(prefix="/characters", tags=["cards"])
UNSAFE = {"Cc", "Cs", "Zl", "Zp"}  # controls, lone surrogates, line breaks: each becomes "_"
ZWJ = "\u200d"
PNG = {"schema": {"type": "string", "format": "binary", "contentMediaType": "image/png"}}
CARD_JSON = {"schema": {"type": "object", "description": "A Character Card V2 (`spec: chara_card_v2`)"}}


def _joins_emoji(before: str, after: str) -> bool:
    """A zero width joiner between two parts of an emoji sequence (👨‍👩‍👧, 🏳️‍🌈, 👩🏽‍💻)."""
    emoji_end = (
        unicodedata.category(before) == "So" or before == "\ufe0f" or "\U0001f3fb" <= before <= "\U0001f3ff"
    )
    return emoji_end and unicodedata.category(after) == "So"


def _exact_name(name: str) -> str:
    """The name as a file name: format characters (bidi overrides and isolates, zero-width marks) are
    dropped, so no name can show its extension reversed; controls and path separators become "_"."""
    kept: list[str] = []
    for i, c in enumerate(name):
        category = unicodedata.category(c)
        if c == ZWJ and kept and i + 1 < len(name) and _joins_emoji(kept[-1], name[i + 1]):
            kept.append(c)
        elif category == "Cf":
            continue
        else:
            kept.append("_" if c in "/\\" or category in UNSAFE else c)
    return "".join(kept)[:100]


def attachment(name: str, ext: str) -> str:
    """RFC 6266 Content-Disposition for any name: an ASCII `filename` and the exact `filename*` (RFC 5987).

    Headers are Latin-1 on the wire, so the real name only travels percent-encoded; control and format
    characters and path separators never reach the client's file system.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    fallback = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_name).strip("._-")[:60] or "character"
    exact = _exact_name(name)
    if not exact.strip():
        exact = fallback
    return f"attachment; filename=\"{fallback}.{ext}\"; filename*=UTF-8''{quote(f'{exact}.{ext}', safe='')}"


@router.post("/import", response_model=CharacterPublic, status_code=status.HTTP_201_CREATED)
async def import_card(
    file: Annotated[UploadFile, File(description="A Character Card V2: PNG with a `chara` chunk, or JSON")],
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
    response: Response,
    visibility: Annotated[Visibility | None, Form()] = None,
) -> Any:
    """Create a character from a card; a PNG's image becomes the character's avatar. `Location`: the
    new character."""
    data = await file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise PayloadTooLargeError(f"card files are limited to {settings.max_upload_bytes} bytes")
    limits = cards.CardLimits(
        max_pixels=settings.max_image_pixels,
        max_text_bytes=settings.max_card_text_bytes,
        max_text_chunks=settings.max_text_chunks,
        max_depth=settings.max_card_json_depth,
    )
    parse = partial(cards.parse_card, data, limits)
    card = await anyio.to_thread.run_sync(parse)
    character = await character_service.import_card(
        session, user, card, visibility=visibility, metadata_limit=settings.metadata_max_bytes
    )
    set_location(request, response, "read", character_id=character.id)
    return character


@router.get(
    "/{character_id}/export",
    response_class=Response,
    responses={
        200: {
            "description": "The card: JSON, or with `format=png` a PNG",
            "content": {"application/json": CARD_JSON, "image/png": PNG},
        }
    },
)
async def export_card(
    character_id: uuid.UUID,
    caller: CurrentPrincipal,
    session: ReadSessionDep,
    format: Annotated[Literal["json", "png"], Query()] = "json",
) -> Response:
    """A card SillyTavern imports: JSON, or PNG with the card in a `chara` text chunk."""
    character = await character_service.get_visible(session, caller, character_id)
    if format == "json":
        return JSONResponse(
            cards.to_card(character),
            headers={"Content-Disposition": attachment(character.name, "json")},
        )
    avatar = await character_service.avatar_of(session, character.id)
    image = await anyio.to_thread.run_sync(cards.to_png, character, avatar)
    return Response(
        image,
        media_type="image/png",
        headers={"Content-Disposition": attachment(character.name, "png")},
    )


@router.get(
    "/{character_id}/avatar",
    response_class=Response,
    responses={200: {"description": "The stored avatar", "content": {"image/png": PNG}}},
)
async def avatar(character_id: uuid.UUID, caller: CurrentPrincipal, session: ReadSessionDep) -> Response:
    character = await character_service.get_visible(session, caller, character_id)
    image = await character_service.avatar_of(session, character.id)
    if image is None:
        raise NotFoundError("This character has no stored avatar")
    return Response(image, media_type="image/png")
