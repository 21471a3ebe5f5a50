"""Card test helpers: PNGs built here independently of the service's PNG code, import and export calls."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from typing import Any

from httpx import AsyncClient, Response

from app.characters.tests.conftest import Caller


def chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def make_png(*text: tuple[str, str], width: int = 2, height: int = 2, extra: bytes = b"") -> bytes:
    """A tiny real PNG with `text` as tEXt chunks and `extra` raw chunks before the pixels."""
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    pixels = chunk(b"IDAT", zlib.compress((b"\x00" + b"\x10\x20\x30" * 2) * 2))
    texts = b"".join(chunk(b"tEXt", k.encode() + b"\x00" + v.encode()) for k, v in text)
    return b"\x89PNG\r\n\x1a\n" + header + texts + extra + pixels + chunk(b"IEND", b"")


def b64(card: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(card).encode()).decode()


def text_chunks(png: bytes) -> dict[str, str]:
    """Every tEXt chunk of a PNG by keyword (the last one wins)."""
    found, pos = {}, 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, payload = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"tEXt":
            key, _, value = payload.partition(b"\x00")
            found[key.decode()] = value.decode()
        pos += 12 + length
    return found


def chunk_card(png: bytes, keyword: str) -> dict[str, Any]:
    """The card a PNG carries in its `keyword` chunk (`chara` or `ccv3`)."""
    return dict(json.loads(base64.b64decode(text_chunks(png)[keyword])))


async def import_card(
    client: AsyncClient, caller: Caller, content: bytes, filename: str, **form: str
) -> Response:
    files = {"file": (filename, content, "application/octet-stream")}
    return await client.post("/api/v1/characters/import", files=files, data=form, headers=caller.headers)


async def export_card(client: AsyncClient, caller: Caller, character_id: str, fmt: str) -> Response:
    return await client.get(
        f"/api/v1/characters/{character_id}/export", params={"format": fmt}, headers=caller.headers
    )
