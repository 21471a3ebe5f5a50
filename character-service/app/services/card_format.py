"""Strict Character Card output: every card we write meets the V2 and V3 specs, whatever came in.

Lenient in, strict out. Cards in the wild break the specs (a `character_book` without `extensions`,
entries missing required fields, `"scan_depth": null`), and we store what they carry. On the way out,
required fields are filled with their spec defaults, optional values of the wrong type are left out,
and every unknown key (in `data`, in the book and its entries, in `extensions`) is written back, as the
specs require. The V3 card is the V2 one with the V3 spec and version, as SillyTavern writes its `ccv3`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from app.models import Character

V2, V3 = "chara_card_v2", "chara_card_v3"
# Card field -> character field, for every field that maps one to one.
FIELD_MAP = {
    "name": "name",
    "description": "description",
    "personality": "personality",
    "scenario": "scenario",
    "first_mes": "greeting",
    "mes_example": "example_dialogues",
    "creator_notes": "creator_notes",
    "system_prompt": "system_prompt",
    "post_history_instructions": "post_history_instructions",
    "alternate_greetings": "alternate_greetings",
    "character_book": "character_book",
    "tags": "tags",
    "creator": "creator",
    "character_version": "character_version",
    "extensions": "extensions",
}
V1_MIRROR = ("name", "description", "personality", "scenario", "first_mes", "mes_example", "tags")
DEFAULT_ORDER = 100  # SillyTavern's default insertion order for a new entry


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _number(value: Any) -> int | float | None:
    """A JSON number; a numeric string ("5") becomes one. Booleans, NaN and infinities are not numbers."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
        value = int(value) if value.is_integer() else value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return value


def as_string(value: Any) -> str | None:
    """A string as it is; a JSON number as its text (cards in the wild have `"keys": [1999]`); else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return str(value)
    return None


def _strings(value: Any) -> list[str] | None:
    """A list of strings (numbers as their text, anything else left out); a comma-separated string
    (seen in the wild for keys) is split."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        return [text for text in map(as_string, value) if text is not None]
    return None


def _object(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _position(value: Any) -> str | None:
    return value if value in ("before_char", "after_char") else None


def _string_map(value: Any) -> dict[str, str] | None:
    return {k: v for k, v in value.items() if isinstance(v, str)} if isinstance(value, dict) else None


def _assets(value: Any) -> list[dict[str, Any]] | None:
    if not isinstance(value, list):
        return None
    kept = [
        a
        for a in value
        if isinstance(a, dict) and isinstance(a.get("type"), str) and isinstance(a.get("uri"), str)
    ]
    return [{**a, "name": _text(a.get("name")) or "", "ext": _text(a.get("ext")) or "unknown"} for a in kept]


Check = Callable[[Any], Any]
ENTRY_OPTIONAL: dict[str, Check] = {
    "name": _text,
    "priority": _number,
    "id": _number,
    "comment": _text,
    "selective": _flag,
    "secondary_keys": _strings,
    "constant": _flag,
    "position": _position,
    "case_sensitive": _flag,
}
BOOK_OPTIONAL: dict[str, Check] = {
    "name": _text,
    "description": _text,
    "scan_depth": _number,
    "token_budget": _number,
    "recursive_scanning": _flag,
}
DATA_V3_OPTIONAL: dict[str, Check] = {
    "assets": _assets,
    "nickname": _text,
    "creator_notes_multilingual": _string_map,
    "source": _strings,
    "creation_date": _number,
    "modification_date": _number,
}


def _checked(raw: dict[str, Any], optional: dict[str, Check]) -> dict[str, Any]:
    """`raw` with its optional fields kept only when well typed (unknown keys untouched)."""
    out = dict(raw)
    for key, check in optional.items():
        if key in out:
            value = check(out.pop(key))
            if value is not None:
                out[key] = value
    return out


def _entry(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        return None
    entry = _checked(raw, ENTRY_OPTIONAL)
    order = _number(raw.get("insertion_order"))
    entry.update(
        keys=_strings(raw.get("keys")) or [],
        content=_text(raw.get("content")) or "",
        extensions=_object(raw.get("extensions")) or {},
        enabled=_flag(raw.get("enabled")) is not False,
        insertion_order=DEFAULT_ORDER if order is None else order,
        use_regex=_flag(raw.get("use_regex")) is True,  # required by V3, harmless in V2
    )
    return entry


def character_book(raw: Any) -> dict[str, Any] | None:
    """A spec-valid lorebook from whatever was stored; None when there is none."""
    if not isinstance(raw, dict):
        return None
    book = _checked(raw, BOOK_OPTIONAL)
    entries = raw.get("entries")
    if not isinstance(entries, list):
        entries = []
    book["extensions"] = _object(raw.get("extensions")) or {}
    book["entries"] = [entry for entry in map(_entry, entries) if entry is not None]
    return book


def kept_card_fields(character: Character) -> dict[str, Any]:
    """The `data` keys an imported card carried that have no column (V3 fields, unknown keys)."""
    card = character.meta.get("card") if isinstance(character.meta, dict) else None
    extra = card.get("extra") if isinstance(card, dict) else None
    return {k: v for k, v in extra.items() if k not in FIELD_MAP} if isinstance(extra, dict) else {}


def card_data(character: Character) -> dict[str, Any]:
    """The card's `data`, valid for V2 and V3 at once."""
    data = _checked(kept_card_fields(character), DATA_V3_OPTIONAL)
    data.update({key: getattr(character, attr) for key, attr in FIELD_MAP.items() if key != "character_book"})
    data["group_only_greetings"] = _strings(data.get("group_only_greetings")) or []
    book = character_book(character.character_book)
    if book is not None:
        data["character_book"] = book
    return data


def card(character: Character, spec: str = V2) -> dict[str, Any]:
    """The whole card (V2, or V3 with `spec=V3`), with the V1 mirror fields SillyTavern also writes."""
    data = card_data(character)
    out: dict[str, Any] = {"spec": spec, "spec_version": "3.0" if spec == V3 else "2.0", "data": data}
    out.update({key: data[key] for key in V1_MIRROR})
    return out
