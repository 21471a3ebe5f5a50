"""Character Card V2 (and V3 via `ccv3`) import and export, as pure functions (no database)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from app.models import Character
from app.schemas.character import MAX_TAG_LENGTH, MAX_TAGS, CharacterCreate
from app.services import card_format, png
from app.services.card_format import FIELD_MAP, V2, V3, as_string
from chat_common.errors import AppError, PayloadTooLargeError, UnprocessableError
from chat_common.validation import json_depth_exceeds

TEXT_FIELDS = {
    "name",
    "description",
    "personality",
    "scenario",
    "first_mes",
    "mes_example",
    "creator_notes",
    "system_prompt",
    "post_history_instructions",
    "creator",
    "character_version",
}


class CardError(UnprocessableError):
    code = "invalid_card"


class UnsupportedFile(AppError):
    status_code, code = 415, "unsupported_file"


@dataclass(frozen=True)
class CardLimits:
    """What a card upload may cost: pixels declared, decoded PNG text, text chunks, JSON nesting."""

    max_pixels: int
    max_text_bytes: int
    max_text_chunks: int
    max_depth: int


@dataclass
class ImportedCard:
    character: CharacterCreate
    avatar: bytes | None


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not a JSON number")  # Python accepts NaN and Infinity; JSON does not


def _load_json(raw: bytes, where: str, max_depth: int) -> dict[str, Any]:
    """A JSON object, or a CardError: nesting past `max_depth` is refused here, so neither the parser
    nor a later stage (validation, JSONB, export) can run out of stack on it."""
    if json_depth_exceeds(raw, max_depth):
        raise CardError(f"the card's JSON is nested more than {max_depth} levels deep")
    try:
        card = json.loads(raw.decode("utf-8"), parse_constant=_not_json)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CardError(f"{where} is not valid JSON: {exc}") from exc
    if not isinstance(card, dict):
        raise CardError(f"{where} must hold a JSON object")
    return card


def _decode_chunk(name: str, text: str, max_depth: int) -> dict[str, Any]:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CardError(f"the '{name}' chunk is not valid base64") from exc
    return _load_json(raw, f"the '{name}' chunk", max_depth)


def _card_from_png(data: bytes, limits: CardLimits) -> dict[str, Any]:
    try:
        texts = png.read_text_chunks(
            data,
            max_pixels=limits.max_pixels,
            max_text_bytes=limits.max_text_bytes,
            max_text_chunks=limits.max_text_chunks,
        )
    except png.PNGTooLarge as exc:
        raise PayloadTooLargeError(str(exc), code="card_text_too_large") from exc
    except png.PNGError as exc:
        raise CardError(str(exc)) from exc
    if "ccv3" in texts:  # V3 when present: V2 readers ignore it, V3 readers prefer it
        return _decode_chunk("ccv3", texts["ccv3"], limits.max_depth)
    if "chara" in texts:
        return _decode_chunk("chara", texts["chara"], limits.max_depth)
    raise CardError("the PNG has no 'chara' (or 'ccv3') text chunk: it is an image, not a character card")


def _texts(value: Any) -> list[str]:
    """Lenient in for a list of strings: strings kept, numbers as their text, null and the rest
    dropped; a single string or number is a list of one."""
    items = value if isinstance(value, list) else [value]
    return [text for text in map(as_string, items) if text is not None]


def _tags(value: Any) -> list[str]:
    """Tags as the card has them, made valid: a comma-separated string is split; tags are stripped,
    and blank, over-long and repeated ones dropped; the first MAX_TAGS are kept."""
    parts = value.split(",") if isinstance(value, str) else _texts(value)
    tags = [tag.strip() for tag in parts]
    kept = [tag for tag in tags if 0 < len(tag) <= MAX_TAG_LENGTH]
    return list(dict.fromkeys(kept))[:MAX_TAGS]


def _character_fields(card: dict[str, Any]) -> dict[str, Any]:
    spec = card.get("spec")
    if spec not in (V2, V3):
        raise CardError(f"unsupported card spec {spec!r}: expected '{V2}' (or '{V3}')")
    data = card.get("data")
    if not isinstance(data, dict):
        raise CardError("the card's 'data' must be an object")
    if not isinstance(data.get("name"), str) or not data["name"].strip():
        raise CardError("the card has no name (data.name)")
    for key in TEXT_FIELDS & data.keys():
        if data[key] is not None and not isinstance(data[key], str):
            raise CardError(f"data.{key} must be a string")
    fields = {FIELD_MAP[k]: v for k, v in data.items() if k in FIELD_MAP and v is not None}
    if "tags" in fields:
        fields["tags"] = _tags(fields["tags"])
    if "alternate_greetings" in fields:
        fields["alternate_greetings"] = _texts(fields["alternate_greetings"])
    extra = {k: v for k, v in data.items() if k not in FIELD_MAP}
    if spec == V3 or extra:
        # V3-only fields (assets, nickname, ...) and anything else the card carried are kept, not lost.
        fields["metadata"] = {
            "card": {"spec": spec, "spec_version": card.get("spec_version"), "extra": extra}
        }
    return fields


def parse_card(data: bytes, limits: CardLimits) -> ImportedCard:
    """A PNG (with a `chara`/`ccv3` chunk) or a JSON card -> a validated character. CPU-bound."""
    if not data.strip():
        raise CardError("the file is empty")
    if png.is_png(data):
        card, avatar = _card_from_png(data, limits), data
    elif data.lstrip()[:1] == b"{":
        card, avatar = _load_json(data, "the file", limits.max_depth), None
    else:
        raise UnsupportedFile("the file is neither a PNG image nor a JSON card")
    try:
        character = CharacterCreate.model_validate(_character_fields(card))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CardError(f"card field {where}: {first['msg']}" if where else f"card: {first['msg']}") from exc
    return ImportedCard(character=character, avatar=avatar)


def to_card(character: Character) -> dict[str, Any]:
    """The Character Card V2 of a character, strictly valid whatever was imported."""
    return card_format.card(character, V2)


def _chunk_text(card: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(card, ensure_ascii=False).encode("utf-8")).decode("ascii")


def to_png(character: Character, avatar: bytes | None) -> bytes:
    """The card inside the stored avatar (or a plain image coloured after the name), as SillyTavern
    writes it: V2 in `chara`, the same card as V3 in `ccv3`."""
    if avatar is None:
        digest = hashlib.sha256(character.name.encode()).digest()
        avatar = png.plain_image(400, 600, (digest[0], digest[1], digest[2]))
    texts = {
        "chara": _chunk_text(card_format.card(character, V2)),
        "ccv3": _chunk_text(card_format.card(character, V3)),
    }
    return png.with_text_chunks(avatar, texts, replace=("chara", "ccv3"))
