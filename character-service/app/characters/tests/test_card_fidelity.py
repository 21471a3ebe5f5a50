"""Card fidelity, lenient in and strict out: unknown keys come back, and every export meets the specs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient

from app.characters.tests.card_spec import CardV2, CardV3, problems, sillytavern_v2
from app.characters.tests.cardkit import b64, chunk_card, export_card, import_card, make_png, text_chunks
from app.characters.tests.conftest import Caller, CharacterFactory

WILD = json.loads((Path(__file__).parent / "fixtures" / "wild_card_v2.json").read_text())

# What the wild card's loose character book becomes on export: required fields filled, values of the
# wrong type left out, unknown keys (probability, useProbability, entry extensions) kept.
WILD_BOOK_EXPORTED = {
    "name": "Lantern Road",
    "extensions": {},
    "entries": [
        {
            "id": 0,
            "keys": ["marsh", "bog"],
            "secondary_keys": [],
            "comment": "The marsh",
            "content": "The marsh swallows roads that are not lit.",
            "constant": False,
            "selective": True,
            "insertion_order": 100,
            "enabled": True,
            "position": "before_char",
            "probability": 100,
            "useProbability": True,
            "extensions": {},
            "use_regex": False,
        },
        {
            "keys": ["lantern", "flame"],
            "content": "Each lantern is lit with oil from the river towns.",
            "extensions": {"lanternapp/weight": 2},
            "enabled": True,
            "insertion_order": 100,
            "use_regex": False,
        },
        {
            "id": 2,
            "keys": ["ferry"],
            "content": "",
            "extensions": {},
            "enabled": False,
            "insertion_order": 5,
            "use_regex": False,
        },
    ],
}

V3_CARD = {
    "spec": "chara_card_v3",
    "spec_version": "3.0",
    "data": {
        **WILD["data"],
        "name": "Mirela V3",
        "assets": [
            {"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"},
            {"type": "x_banner", "uri": "https://example.com/banner.webp", "name": "banner", "ext": "webp"},
        ],
        "creator_notes_multilingual": {"en": "Slow burn.", "ja": "ゆっくり。"},
        "source": ["https://example.com/cards/mirela"],
        "group_only_greetings": ["*Mirela raises the lantern to the whole party.*"],
        "creation_date": 1700000000,
        "modification_date": 1700000500,
    },
}


def test_the_wild_card_breaks_the_specs_as_found() -> None:
    # The fixture is the kind of card the service must export cleanly: it is not valid itself.
    assert "data.character_book.extensions: Field required" in problems(WILD, CardV2)
    assert not sillytavern_v2(WILD)


async def _exports(client: AsyncClient, caller: Caller, character_id: str) -> dict[str, dict[str, Any]]:
    """The JSON export, and the PNG export's `chara` and `ccv3` chunks."""
    as_json = await export_card(client, caller, character_id, "json")
    as_png = await export_card(client, caller, character_id, "png")
    assert as_json.status_code == as_png.status_code == 200
    assert {"chara", "ccv3"} <= set(text_chunks(as_png.content))
    return {
        "json": as_json.json(),
        "chara": chunk_card(as_png.content, "chara"),
        "ccv3": chunk_card(as_png.content, "ccv3"),
    }


@pytest.mark.parametrize("as_png", [False, True])
async def test_every_export_of_a_wild_card_is_strictly_valid(
    client: AsyncClient, alice: Caller, as_png: bool
) -> None:
    content = make_png(("chara", b64(WILD))) if as_png else json.dumps(WILD).encode()
    imported = await import_card(client, alice, content, "wild.png" if as_png else "wild.json")
    assert imported.status_code == 201, imported.text
    exports = await _exports(client, alice, imported.json()["id"])
    for card in (exports["json"], exports["chara"]):
        assert problems(card, CardV2) == []
        assert sillytavern_v2(card)
    assert problems(exports["ccv3"], CardV3) == []
    assert exports["ccv3"]["spec"] == "chara_card_v3" and exports["ccv3"]["spec_version"] == "3.0"
    assert exports["chara"]["data"] == exports["json"]["data"] == exports["ccv3"]["data"]
    assert exports["json"]["data"]["character_book"] == WILD_BOOK_EXPORTED


async def test_unknown_data_keys_and_extensions_are_written_back(client: AsyncClient, alice: Caller) -> None:
    imported = await import_card(client, alice, json.dumps(WILD).encode(), "wild.json")
    exports = await _exports(client, alice, imported.json()["id"])
    for card in exports.values():
        data = card["data"]
        assert data["nickname"] == "Mira"
        assert data["x_lanternapp_rating"] == {"stars": 5, "reviews": ["steady", "warm"]}
        assert data["group_only_greetings"] == []
        assert data["extensions"] == WILD["data"]["extensions"]
        assert {k: data[k] for k in ("name", "first_mes", "alternate_greetings", "tags")} == {
            k: WILD["data"][k] for k in ("name", "first_mes", "alternate_greetings", "tags")
        }


async def test_v3_fields_survive_import_and_export(client: AsyncClient, alice: Caller) -> None:
    content = make_png(("chara", b64(WILD)), ("ccv3", b64(V3_CARD)))
    imported = await import_card(client, alice, content, "v3.png")
    assert imported.status_code == 201, imported.text
    exports = await _exports(client, alice, imported.json()["id"])
    v3_keys = ("assets", "creator_notes_multilingual", "source", "group_only_greetings", "creation_date")
    for card in exports.values():
        assert {k: card["data"][k] for k in v3_keys} == {k: V3_CARD["data"][k] for k in v3_keys}
        assert card["data"]["modification_date"] == 1700000500
        assert card["data"]["name"] == "Mirela V3"
    assert problems(exports["ccv3"], CardV3) == []
    assert problems(exports["json"], CardV2) == []


async def test_v3_fields_of_the_wrong_type_are_left_out_of_the_export(
    client: AsyncClient, alice: Caller
) -> None:
    broken = {
        "spec": "chara_card_v3",
        "spec_version": "3.0",
        "data": {
            "name": "Loose V3",
            "nickname": 7,
            "assets": [{"type": "icon", "uri": "ccdefault:"}, "not an asset"],
            "source": "https://example.com/one",
            "group_only_greetings": None,
            "creation_date": "yesterday",
            "creator_notes_multilingual": {"en": "ok", "fr": 3},
        },
    }
    imported = await import_card(client, alice, json.dumps(broken).encode(), "loose.json")
    assert imported.status_code == 201, imported.text
    exports = await _exports(client, alice, imported.json()["id"])
    data = exports["ccv3"]["data"]
    assert problems(exports["ccv3"], CardV3) == [] and problems(exports["json"], CardV2) == []
    assert "nickname" not in data and "creation_date" not in data
    assert data["assets"] == [{"type": "icon", "uri": "ccdefault:", "name": "", "ext": "unknown"}]
    assert data["source"] == ["https://example.com/one"]
    assert data["group_only_greetings"] == []
    assert data["creator_notes_multilingual"] == {"en": "ok"}


@pytest.mark.parametrize("fmt", ["json", "png"])
async def test_export_then_import_then_export_is_identical(
    client: AsyncClient, alice: Caller, fmt: str
) -> None:
    first = await import_card(client, alice, json.dumps(WILD).encode(), "wild.json")
    exported = await export_card(client, alice, first.json()["id"], fmt)
    second = await import_card(client, alice, exported.content, f"again.{fmt}")
    assert second.status_code == 201, second.text
    again = await export_card(client, alice, second.json()["id"], fmt)
    if fmt == "json":
        assert again.json() == exported.json()
    else:
        for keyword in ("chara", "ccv3"):
            assert chunk_card(again.content, keyword) == chunk_card(exported.content, keyword)


async def test_a_character_without_a_book_exports_no_null_book(
    client: AsyncClient, alice: Caller, make_character: CharacterFactory
) -> None:
    character = await make_character(alice, name="Bookless")
    exports = await _exports(client, alice, character["id"])
    assert "character_book" not in exports["json"]["data"]
    assert problems(exports["json"], CardV2) == [] and problems(exports["ccv3"], CardV3) == []


async def test_a_sparse_book_created_through_the_api_exports_valid(
    client: AsyncClient, alice: Caller, make_character: CharacterFactory
) -> None:
    book = {"entries": [{"keys": ["k"], "content": "c"}, "junk"], "token_budget": "lots"}
    character = await make_character(alice, name="Sparse", character_book=book)
    exports = await _exports(client, alice, character["id"])
    assert exports["json"]["data"]["character_book"] == {
        "extensions": {},
        "entries": [
            {
                "keys": ["k"],
                "content": "c",
                "extensions": {},
                "enabled": True,
                "insertion_order": 100,
                "use_regex": False,
            }
        ],
    }
    assert sillytavern_v2(exports["json"]) and problems(exports["ccv3"], CardV3) == []


LOOSE_LISTS = {
    "spec": "chara_card_v2",
    "spec_version": "2.0",
    "data": {
        "name": "Loose Lists",
        "tags": ["fantasy", 5, None, 2.5, True, {"x": 1}, ["y"], "  ", " elf ", "fantasy", "t" * 65],
        "alternate_greetings": ["Hi.", 7, None, {"text": "x"}, ""],
        "character_book": {
            "entries": [{"keys": ["gate", 1999, None], "secondary_keys": [42, False], "content": "c"}]
        },
        "group_only_greetings": ["Hello, all.", 3, None],
        "source": [12, "https://example.com/loose"],
    },
}


async def test_lists_with_numbers_and_nulls_in_a_card_are_read_leniently(
    client: AsyncClient, alice: Caller
) -> None:
    imported = await import_card(client, alice, json.dumps(LOOSE_LISTS).encode(), "loose.json")
    assert imported.status_code == 201, imported.text
    # numbers become strings; null, booleans, objects, lists, blank and over-long tags are dropped
    assert imported.json()["tags"] == ["fantasy", "5", "2.5", "elf"]
    assert imported.json()["alternate_greetings"] == ["Hi.", "7", ""]
    exports = await _exports(client, alice, imported.json()["id"])
    assert problems(exports["ccv3"], CardV3) == [] and problems(exports["json"], CardV2) == []
    assert sillytavern_v2(exports["json"])
    for card in exports.values():
        data = card["data"]
        assert data["tags"] == card["tags"] == ["fantasy", "5", "2.5", "elf"]
        assert data["alternate_greetings"] == ["Hi.", "7", ""]
        entry = data["character_book"]["entries"][0]
        assert (entry["keys"], entry["secondary_keys"]) == (["gate", "1999"], ["42"])
        assert data["group_only_greetings"] == ["Hello, all.", "3"]
        assert data["source"] == ["12", "https://example.com/loose"]


@pytest.mark.parametrize(
    ("loose", "tags", "greetings"),
    [
        (
            {"tags": "fantasy, elf,", "alternate_greetings": "Hello there."},
            ["fantasy", "elf"],
            ["Hello there."],
        ),
        ({"tags": 5, "alternate_greetings": 7}, ["5"], ["7"]),
        ({"tags": {"a": 1}, "alternate_greetings": {"b": 2}}, [], []),
        ({"tags": [f"t{i}" for i in range(60)]}, [f"t{i}" for i in range(50)], []),
    ],
)
async def test_list_fields_of_another_shape_are_read_leniently(
    client: AsyncClient, alice: Caller, loose: dict[str, Any], tags: list[str], greetings: list[str]
) -> None:
    card = {"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "Shapes", **loose}}
    imported = await import_card(client, alice, json.dumps(card).encode(), "shapes.json")
    assert imported.status_code == 201, imported.text
    assert (imported.json()["tags"], imported.json()["alternate_greetings"]) == (tags, greetings)
