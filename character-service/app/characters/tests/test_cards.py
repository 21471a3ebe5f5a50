"""Character Card V2 import and export: round trips, a real-world card, ccv3, and bad uploads."""

from __future__ import annotations

import base64
import json
import struct
import zlib

import pytest
from httpx import AsyncClient

from app.characters.tests.cardkit import b64, chunk, export_card, import_card, make_png, text_chunks
from app.characters.tests.conftest import Caller, CharacterFactory, error_code

CARD_FIELDS = (
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
    "character_book",
    "tags",
    "creator",
    "character_version",
    "extensions",
)


REAL_WORLD = {
    "spec": "chara_card_v2",
    "spec_version": "2.0",
    "data": {
        "name": "Seraphina 🌸",
        "description": "{{char}} is a guardian of the Eldoria forest. Ее голос мягкий. 森の守護者。",
        "personality": "caring, protective, a little mischievous 😊",
        "scenario": "{{user}} wakes up in {{char}}'s glade after an attack.",
        "first_mes": '*Seraphina kneels beside you* "You\'re safe now." 💚',
        "mes_example": "<START>\n{{user}}: Who are you?\n{{char}}: " + "A guardian of old. " * 1500,
        "creator_notes": "Tested with many models. Ünïcödé notes ✨",
        "system_prompt": "You are {{char}}. Never speak for {{user}}.",
        "post_history_instructions": "[Stay in character; vivid prose.]",
        "alternate_greetings": ["*A soft glow* Hello, traveler.", "🌙 The night is young."],
        "character_book": {
            "name": "Eldoria",
            "scan_depth": 4,
            "token_budget": 512,
            "recursive_scanning": False,
            "extensions": {},
            "entries": [
                {
                    "keys": ["glade", "forest"],
                    "content": "The glade is sacred.",
                    "extensions": {},
                    "enabled": True,
                    "insertion_order": 0,
                    "case_sensitive": False,
                    "id": 1,
                    "secondary_keys": [],
                    "constant": False,
                    "position": "before_char",
                    "use_regex": False,
                },
            ],
        },
        "tags": ["Fantasy", "Female", "Guardian 🌳"],
        "creator": "someone@chub",
        "character_version": "1.2.3",
        "extensions": {
            "talkativeness": "0.5",
            "fav": False,
            "world": "Eldoria",
            "depth_prompt": {"prompt": "Seraphina smells of pine.", "depth": 4, "role": "system"},
            "chub": {"full_path": "someone/seraphina", "id": 12345, "related_lorebooks": []},
            "unknown_tool_xyz": {"nested": {"deep": [1, 2, {"ok": None}]}},
        },
    },
}


@pytest.mark.parametrize("fmt", ["json", "png"])
async def test_exported_card_reimports_with_identical_fields(
    client: AsyncClient, alice: Caller, make_character: CharacterFactory, fmt: str
) -> None:
    original = await make_character(
        alice,
        description="d",
        personality="p",
        scenario="s",
        greeting="g",
        alternate_greetings=["g2"],
        example_dialogues="<START>",
        system_prompt="sys",
        post_history_instructions="post",
        creator_notes="notes",
        tags=["t1", "t2"],
        creator="me",
        character_version="2",
        extensions={"x": {"y": 1}},
        character_book={
            "extensions": {},
            "entries": [
                {
                    "keys": ["k"],
                    "content": "c",
                    "extensions": {},
                    "enabled": True,
                    "insertion_order": 0,
                    "use_regex": False,
                }
            ],
        },
    )
    exported = await export_card(client, alice, original["id"], fmt)
    assert exported.status_code == 200
    assert exported.headers["content-type"] == ("image/png" if fmt == "png" else "application/json")
    imported = await import_card(client, alice, exported.content, f"card.{fmt}")
    assert imported.status_code == 201, imported.text
    copy = imported.json()
    fields = (
        "name",
        "description",
        "personality",
        "scenario",
        "greeting",
        "alternate_greetings",
        "example_dialogues",
        "system_prompt",
        "post_history_instructions",
        "creator_notes",
        "tags",
        "creator",
        "character_version",
        "extensions",
        "character_book",
    )
    assert {f: copy[f] for f in fields} == {f: original[f] for f in fields}
    assert copy["id"] != original["id"] and copy["owner_id"] == alice.id


@pytest.mark.parametrize("as_png", [False, True])
async def test_real_world_card_survives_the_round_trip(
    client: AsyncClient, alice: Caller, as_png: bool
) -> None:
    content = make_png(("chara", b64(REAL_WORLD))) if as_png else json.dumps(REAL_WORLD).encode()
    imported = await import_card(client, alice, content, "seraphina.png" if as_png else "seraphina.json")
    assert imported.status_code == 201, imported.text
    for fmt in ("json", "png"):
        exported = await export_card(client, alice, imported.json()["id"], fmt)
        card = (
            exported.json()
            if fmt == "json"
            else json.loads(base64.b64decode(text_chunks(exported.content)["chara"]))
        )
        assert card["spec"] == "chara_card_v2" and card["spec_version"] == "2.0"
        assert {k: card["data"][k] for k in CARD_FIELDS} == {k: REAL_WORLD["data"][k] for k in CARD_FIELDS}
        assert card["name"] == REAL_WORLD["data"]["name"]  # V1 mirror fields, as SillyTavern writes them


async def test_png_import_keeps_the_image_as_avatar_and_exports_into_it(
    client: AsyncClient, alice: Caller
) -> None:
    original = make_png(("chara", b64(REAL_WORLD)), ("comment", "made with love"))
    imported = (await import_card(client, alice, original, "card.png")).json()
    assert imported["avatar_url"] == f"/api/v1/characters/{imported['id']}/avatar"
    avatar = await client.get(imported["avatar_url"], headers=alice.headers)
    assert avatar.content == original
    exported = (await export_card(client, alice, imported["id"], "png")).content
    chunks = text_chunks(exported)
    assert chunks["comment"] == "made with love" and set(chunks) == {"comment", "chara", "ccv3"}


async def test_png_export_without_avatar_is_a_generated_image(
    client: AsyncClient, alice: Caller, make_character: CharacterFactory
) -> None:
    character = await make_character(alice, name="Plain Jane")
    exported = (await export_card(client, alice, character["id"], "png")).content
    assert exported.startswith(b"\x89PNG\r\n\x1a\n")
    assert struct.unpack(">II", exported[16:24]) == (400, 600)
    assert json.loads(base64.b64decode(text_chunks(exported)["chara"]))["data"]["name"] == "Plain Jane"


async def test_ccv3_chunk_is_preferred_and_v3_fields_kept(client: AsyncClient, alice: Caller) -> None:
    v3 = {
        "spec": "chara_card_v3",
        "spec_version": "3.0",
        "data": {
            **REAL_WORLD["data"],
            "name": "Seraphina V3",
            "nickname": "Sera",
            "assets": [{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"}],
            "group_only_greetings": ["Hello, everyone"],
            "creation_date": 1700000000,
        },
    }
    content = make_png(("chara", b64(REAL_WORLD)), ("ccv3", b64(v3)))
    imported = (await import_card(client, alice, content, "v3.png")).json()
    assert imported["name"] == "Seraphina V3"
    kept = imported["metadata"]["card"]
    assert kept["spec"] == "chara_card_v3" and kept["extra"]["nickname"] == "Sera"
    assert kept["extra"]["assets"][0]["uri"] == "ccdefault:" and kept["extra"]["creation_date"] == 1700000000


async def test_import_visibility_and_privacy(client: AsyncClient, alice: Caller, bob: Caller) -> None:
    imported = (await import_card(client, alice, json.dumps(REAL_WORLD).encode(), "c.json")).json()
    assert imported["visibility"] == "private"
    assert (await export_card(client, bob, imported["id"], "json")).status_code == 404
    public = (
        await import_card(client, alice, json.dumps(REAL_WORLD).encode(), "c.json", visibility="public")
    ).json()
    assert (await export_card(client, bob, public["id"], "png")).status_code == 200


def _zip_bomb_chunk() -> bytes:
    return chunk(b"zTXt", b"chara\x00\x00" + zlib.compress(b"A" * 10_000_000))


def _bad_crc() -> bytes:
    png = bytearray(make_png(("chara", b64(REAL_WORLD))))
    png[40] ^= 0xFF
    return bytes(png)


BAD_UPLOADS = [
    ("not an image or JSON", b"GIF89a\x01\x00\x01\x00", 415, "neither a PNG"),
    ("empty file", b"", 422, "empty"),
    ("PNG without card chunk", make_png(("comment", "hello")), 422, "no 'chara'"),
    ("bad base64", make_png(("chara", "!!!not base64!!!")), 422, "base64"),
    ("bad JSON in chunk", make_png(("chara", base64.b64encode(b"{oops").decode())), 422, "valid JSON"),
    ("wrong spec", json.dumps({"spec": "tavern_v1", "data": {"name": "x"}}).encode(), 422, "spec"),
    ("no name", json.dumps({"spec": "chara_card_v2", "data": {"description": "x"}}).encode(), 422, "name"),
    (
        "blank name",
        json.dumps({"spec": "chara_card_v2", "data": {"name": " \t\u3000"}}).encode(),
        422,
        "the card has no name (data.name)",
    ),
    (
        "wrong field type",
        json.dumps({"spec": "chara_card_v2", "data": {"name": "x", "description": ["a"]}}).encode(),
        422,
        "data.description must be a string",
    ),
    ("card is a list", b"[1, 2, 3]", 415, "neither"),
    ("broken JSON file", b'{"spec": "chara_card_v2", ', 422, "not valid JSON"),
    (
        "NaN is not JSON",
        b'{"spec": "chara_card_v2", "data": {"name": "x", "extensions": {"v": NaN}}}',
        422,
        "not valid JSON: NaN",
    ),
    (
        "huge dimensions",
        make_png(("chara", b64(REAL_WORLD)), width=100_000, height=100_000),
        422,
        "dimensions",
    ),
    ("compressed text bomb", make_png(extra=_zip_bomb_chunk()), 413, "more than 6291456 bytes of text"),
    ("corrupt CRC", _bad_crc(), 422, "CRC"),
    ("iTXt cut short", make_png(extra=chunk(b"iTXt", b"chara\x00")), 422, "no NUL terminator"),
    ("text chunk without keyword end", make_png(extra=chunk(b"tEXt", b"chara")), 422, "no NUL terminator"),
    ("truncated PNG", make_png(("chara", b64(REAL_WORLD)))[:60], 422, "truncated"),
]


@pytest.mark.parametrize(("_", "content", "status", "message"), BAD_UPLOADS, ids=[b[0] for b in BAD_UPLOADS])
async def test_bad_uploads_get_a_clear_4xx(
    client: AsyncClient, alice: Caller, _: str, content: bytes, status: int, message: str
) -> None:
    response = await import_card(client, alice, content, "upload.bin")
    assert response.status_code == status, response.text
    assert message in response.json()["error"]["message"]
    error_code(response)


async def test_oversized_upload_is_413(client: AsyncClient, alice: Caller) -> None:
    response = await import_card(client, alice, b"{" + b" " * (10 * 1_048_576 + 10) + b"}", "big.json")
    assert response.status_code == 413


async def test_missing_file_is_422(client: AsyncClient, alice: Caller) -> None:
    response = await client.post(
        "/api/v1/characters/import", data={"visibility": "public"}, headers=alice.headers
    )
    assert response.status_code == 422
