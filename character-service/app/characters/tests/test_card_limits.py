"""Card uploads that would cost memory or stack: one cap on all PNG text, a cap on text chunks, nesting."""

from __future__ import annotations

import base64
import json
import tracemalloc
import zlib

import pytest
from httpx import AsyncClient

from app.characters.tests.cardkit import b64, chunk, export_card, import_card, make_png
from app.characters.tests.conftest import Caller, CharacterFactory, error_code
from app.services import png

CARD = {"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "Limits"}}
MIB = 1_048_576


def ztxt(keyword: str, text: bytes) -> bytes:
    return chunk(b"zTXt", keyword.encode() + b"\x00\x00" + zlib.compress(text, 9))


def itxt(keyword: str, text: bytes, *, compressed: bool = False) -> bytes:
    body = zlib.compress(text, 9) if compressed else text
    return chunk(b"iTXt", keyword.encode() + b"\x00" + bytes([compressed, 0]) + b"\x00\x00" + body)


async def test_many_compressed_text_chunks_hit_one_total_cap_with_memory_bounded(
    client: AsyncClient, alice: Caller
) -> None:
    # 40 chunks of 2,000,000 bytes each (every one under the old per-chunk cap): 80 MB of text in ~80 KB.
    bombs = b"".join(ztxt(f"note{i}", b"A" * 2_000_000) for i in range(40))
    content = make_png(("chara", b64(CARD)), extra=bombs)
    assert len(content) < 120_000
    tracemalloc.start()
    try:
        response = await import_card(client, alice, content, "bomb.png")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 413, response.text
    assert error_code(response) == "card_text_too_large"
    assert response.json()["error"]["message"] == (
        f"the PNG's text chunks hold more than {6 * MIB} bytes of text (the limit for a card)"
    )
    assert peak < 18 * MIB, f"peak {peak} bytes while refusing an {len(content)}-byte upload"


@pytest.mark.parametrize("kind", ["iTXt", "tEXt"])
async def test_one_large_uncompressed_text_chunk_hits_the_total_cap(
    client: AsyncClient, alice: Caller, kind: str
) -> None:
    big = b"x" * (8 * MIB)
    extra = itxt("XML:com.adobe.xmp", big) if kind == "iTXt" else chunk(b"tEXt", b"parameters\x00" + big)
    response = await import_card(client, alice, make_png(("chara", b64(CARD)), extra=extra), "big.png")
    assert response.status_code == 413, response.text
    assert error_code(response) == "card_text_too_large"


async def test_too_many_text_chunks_is_422(client: AsyncClient, alice: Caller) -> None:
    comments = [(f"c{i}", "hello") for i in range(32)]  # 33 text chunks with the card
    response = await import_card(client, alice, make_png(("chara", b64(CARD)), *comments), "many.png")
    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"] == "the PNG has more than 32 text chunks"
    ok = await import_card(client, alice, make_png(("chara", b64(CARD)), *comments[:31]), "ok.png")
    assert ok.status_code == 201, ok.text


def test_total_text_cap_counts_every_kind_of_text_chunk_exactly() -> None:
    extra = ztxt("a", b"z" * 15) + itxt("b", b"i" * 10, compressed=True) + itxt("c", b"u" * 5)
    image = make_png(("chara", "t" * 10), extra=extra)  # 10 + 15 + 10 + 5 = 40 bytes of text
    texts = png.read_text_chunks(image, max_pixels=4, max_text_bytes=40, max_text_chunks=4)
    assert texts == {"chara": "t" * 10, "a": "z" * 15, "b": "i" * 10, "c": "u" * 5}
    with pytest.raises(png.PNGTooLarge):
        png.read_text_chunks(image, max_pixels=4, max_text_bytes=39, max_text_chunks=4)
    with pytest.raises(png.PNGError, match="more than 3 text chunks"):
        png.read_text_chunks(image, max_pixels=4, max_text_bytes=40, max_text_chunks=3)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def card_json(extensions_value: str) -> bytes:
    return (
        '{"spec": "chara_card_v2", "data": {"name": "Deep", "extensions": {"x": ' + extensions_value + "}}}"
    ).encode()


@pytest.mark.parametrize("depth", [100_000, 200])
@pytest.mark.parametrize("as_png", [False, True])
async def test_deeply_nested_card_json_is_422(
    client: AsyncClient, alice: Caller, depth: int, as_png: bool
) -> None:
    raw = card_json(nested(depth))
    content = make_png(("chara", base64.b64encode(raw).decode())) if as_png else raw
    response = await import_card(client, alice, content, "deep.png" if as_png else "deep.json")
    assert response.status_code == 422, response.text
    assert error_code(response) == "invalid_card"
    assert response.json()["error"]["message"] == "the card's JSON is nested more than 64 levels deep"


async def test_card_nested_within_the_limit_imports_and_exports(client: AsyncClient, alice: Caller) -> None:
    # root (1) > data (2) > extensions (3) > x: 61 more levels = 64
    response = await import_card(client, alice, card_json(nested(61)), "deep.json")
    assert response.status_code == 201, response.text
    exported = await export_card(client, alice, response.json()["id"], "json")
    assert exported.status_code == 200
    assert json.dumps(exported.json()["data"]["extensions"]["x"]) == json.dumps(json.loads(nested(61)))


async def test_a_large_card_exported_as_png_imports_again(
    client: AsyncClient, alice: Caller, make_character: CharacterFactory
) -> None:
    # A PNG export carries the card twice (chara and ccv3), base64: 2 MB of JSON is 5.3 MB of text.
    long = "word " * 20_000
    fields = ("description", "personality", "scenario", "greeting", "example_dialogues", "system_prompt")
    character = await make_character(
        alice, name="Large", **dict.fromkeys(fields, long), alternate_greetings=[long] * 9
    )
    exported = await export_card(client, alice, character["id"], "png")
    assert 4 * MIB < len(exported.content) < 6 * MIB
    again = await import_card(client, alice, exported.content, "large.png")
    assert again.status_code == 201, again.text
    assert again.json()["alternate_greetings"] == [long] * 9
