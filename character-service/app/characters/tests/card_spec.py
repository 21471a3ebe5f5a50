"""A strict reading of the Character Card V2 and V3 specs, for checking what the service exports.

Written from the specs' own type definitions (malfoyslastname/character-card-spec-v2 `spec_v2.md`,
kwaroran/character-card-spec-v3 `SPEC_V3.md`): required fields must be present with their type,
optional fields (`?`) may be absent but never null or of another type, unknown keys are allowed.
`sillytavern_v2` mirrors SillyTavern's own TavernCardValidator, which refused our exports before.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError

Number = StrictInt | StrictFloat
Strings = list[StrictStr]


class Spec(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class EntryV2(Spec):
    keys: Strings
    content: StrictStr
    extensions: dict[str, Any]
    enabled: StrictBool
    insertion_order: Number
    name: StrictStr = ""
    priority: Number = 0
    id: Number = 0
    comment: StrictStr = ""
    selective: StrictBool = False
    secondary_keys: Strings = []
    constant: StrictBool = False
    position: Literal["before_char", "after_char"] = "before_char"


class BookV2(Spec):
    name: StrictStr = ""
    description: StrictStr = ""
    scan_depth: Number = 0
    token_budget: Number = 0
    recursive_scanning: StrictBool = False
    extensions: dict[str, Any]
    entries: list[EntryV2]


class DataV2(Spec):
    name: StrictStr
    description: StrictStr
    personality: StrictStr
    scenario: StrictStr
    first_mes: StrictStr
    mes_example: StrictStr
    creator_notes: StrictStr
    system_prompt: StrictStr
    post_history_instructions: StrictStr
    alternate_greetings: Strings
    character_book: BookV2 | None = None  # the default only stands for "absent": null is refused below
    tags: Strings
    creator: StrictStr
    character_version: StrictStr
    extensions: dict[str, Any]


class CardV2(Spec):
    spec: Literal["chara_card_v2"]
    spec_version: Literal["2.0"]
    data: DataV2


class EntryV3(EntryV2):
    use_regex: StrictBool
    case_sensitive: StrictBool = False
    id: Number | StrictStr = 0  # the V3 text says string, its interface says number


class BookV3(BookV2):
    entries: list[EntryV3]  # type: ignore[assignment]


class Asset(Spec):
    type: StrictStr
    uri: StrictStr
    name: StrictStr
    ext: StrictStr


class DataV3(DataV2):
    character_book: BookV3 | None = None  # type: ignore[assignment]
    assets: list[Asset] = []
    nickname: StrictStr = ""
    creator_notes_multilingual: dict[str, StrictStr] = {}
    source: Strings = []
    group_only_greetings: Strings
    creation_date: Number = 0
    modification_date: Number = 0


class CardV3(Spec):
    spec: Literal["chara_card_v3"]
    spec_version: Literal["3.0"]
    data: DataV3


OPTIONAL_NOT_NULL = ("character_book", "assets", "nickname", "creator_notes_multilingual", "source")


def problems(card: Any, model: type[CardV2] | type[CardV3]) -> list[str]:
    """Every way `card` breaks the spec, as `where: what` lines (empty when it is valid)."""
    found = []
    try:
        model.model_validate(card)
    except ValidationError as exc:
        found = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
    data = card.get("data") if isinstance(card, dict) else None
    if isinstance(data, dict):
        found += [
            f"data.{key}: null where absent is meant"
            for key in OPTIONAL_NOT_NULL
            if key in data and data[key] is None
        ]
    return found


def _js_falsy(value: Any) -> bool:
    return value is None or value is False or value == "" or (type(value) in (int, float) and value == 0)


def _js_object(value: Any) -> bool:
    return value is None or isinstance(value, (dict, list))  # JavaScript's typeof x === "object"


def sillytavern_v2(card: dict[str, Any]) -> bool:
    """SillyTavern's TavernCardValidator.validateV2(): spec, version, data fields, character_book shape."""
    data = card.get("data")
    if card.get("spec") != "chara_card_v2" or card.get("spec_version") != "2.0" or _js_falsy(data):
        return False
    required = (
        "name",
        "description",
        "personality",
        "scenario",
        "first_mes",
        "mes_example",
        "creator_notes",
        "system_prompt",
        "post_history_instructions",
        "alternate_greetings",
        "tags",
        "creator",
        "character_version",
        "extensions",
    )
    if not all(key in data for key in required):
        return False
    if not (isinstance(data["alternate_greetings"], list) and isinstance(data["tags"], list)):
        return False
    if not _js_object(data["extensions"]):
        return False
    book = data.get("character_book")
    if _js_falsy(book):
        return True
    return all(key in book for key in ("extensions", "entries")) and (
        isinstance(book["entries"], list) and _js_object(book["extensions"])
    )
