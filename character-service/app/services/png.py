"""Just enough PNG to carry character cards: read and write text chunks, make a plain image.

Reading is defensive: CRCs are checked, declared dimensions are capped (decompression bombs), and
all text chunks together are decoded only up to one total limit. No pixel data is ever decoded.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")


class PNGError(ValueError):
    """The file is not a PNG we can read; the message says why."""


def is_png(data: bytes) -> bool:
    return data.startswith(SIGNATURE)


def chunks(data: bytes) -> Iterator[tuple[bytes, memoryview]]:
    """(type, payload) of every chunk up to IEND, CRC-checked; payloads are views, never copies."""
    if not is_png(data):
        raise PNGError("not a PNG file (bad signature)")
    view = memoryview(data)
    pos = len(SIGNATURE)
    while pos < len(data):
        if pos + 8 > len(data):
            raise PNGError("truncated PNG: chunk header cut off")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise PNGError(f"truncated PNG: {kind.decode('latin-1', 'replace')} chunk cut off")
        payload = view[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(payload, zlib.crc32(kind)) & 0xFFFFFFFF != crc:
            raise PNGError(f"corrupt PNG: CRC mismatch in {kind.decode('latin-1', 'replace')} chunk")
        yield kind, payload
        if kind == b"IEND":
            return
        pos = end
    raise PNGError("truncated PNG: no IEND chunk")


class PNGTooLarge(PNGError):
    """The text chunks together decode to more than the cap."""


class _TextBudget:
    """One cap on the decoded text of all text chunks together, and on how many there are."""

    def __init__(self, max_bytes: int, max_chunks: int) -> None:
        self.max_bytes, self.max_chunks = max_bytes, max_chunks
        self.used = self.chunks = 0

    def count_chunk(self) -> None:
        self.chunks += 1
        if self.chunks > self.max_chunks:
            raise PNGError(f"the PNG has more than {self.max_chunks} text chunks")

    @property
    def left(self) -> int:
        return self.max_bytes - self.used

    def take(self, size: int) -> None:
        if size > self.left:
            raise PNGTooLarge(
                f"the PNG's text chunks hold more than {self.max_bytes} bytes of text (the limit for a card)"
            )
        self.used += size


def _inflate(data: memoryview, budget: _TextBudget) -> bytes:
    """Inflate at most one byte past what the budget has left, so a bomb never grows in memory."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, budget.left + 1)
    except zlib.error as exc:
        raise PNGError(f"corrupt compressed text chunk: {exc}") from exc
    budget.take(len(out))
    return out


def _until_nul(payload: memoryview, start: int) -> tuple[bytes, int]:
    """The bytes from `start` to the next NUL and the offset after it, copying small windows only."""
    for window in range(start, len(payload), 4096):
        found = bytes(payload[window : window + 4096]).find(b"\x00")
        if found >= 0:
            return bytes(payload[start : window + found]), window + found + 1
    raise PNGError("malformed text chunk: a field has no NUL terminator")


def keyword(payload: memoryview) -> str:
    return _until_nul(payload, 0)[0].decode("latin-1")


def _text_chunk(kind: bytes, payload: memoryview, budget: _TextBudget) -> tuple[str, str]:
    """(keyword, text) of a text chunk; the text is counted against the budget before it is decoded."""
    name, pos = _until_nul(payload, 0)
    if kind == b"zTXt":
        return name.decode("latin-1"), _inflate(payload[pos + 1 :], budget).decode("latin-1")
    if kind == b"tEXt":
        budget.take(len(payload) - pos)
        return name.decode("latin-1"), str(payload[pos:], "latin-1")
    compressed = bytes(payload[pos : pos + 1]) == b"\x01"
    _language, pos = _until_nul(payload, pos + 2)
    _translated, pos = _until_nul(payload, pos)
    if compressed:
        raw: bytes | memoryview = _inflate(payload[pos:], budget)
    else:
        budget.take(len(payload) - pos)
        raw = payload[pos:]
    try:
        return name.decode("latin-1"), str(raw, "utf-8")
    except UnicodeDecodeError as exc:
        raise PNGError("iTXt chunk is not valid UTF-8") from exc


def read_text_chunks(
    data: bytes, *, max_pixels: int, max_text_bytes: int, max_text_chunks: int
) -> dict[str, str]:
    """Every text chunk by lower-cased keyword, after checking the image is not a bomb.

    All text chunks share one budget of `max_text_bytes` decoded bytes and at most `max_text_chunks`
    of them are read: many small compressed chunks cannot add up to a large allocation.
    """
    found: dict[str, str] = {}
    budget = _TextBudget(max_text_bytes, max_text_chunks)
    for index, (kind, payload) in enumerate(chunks(data)):
        if index == 0:
            if kind != b"IHDR" or len(payload) < 8:
                raise PNGError("corrupt PNG: first chunk is not IHDR")
            width, height = struct.unpack(">II", payload[:8])
            if width == 0 or height == 0 or width * height > max_pixels:
                raise PNGError(f"image dimensions {width}x{height} exceed the limit of {max_pixels} pixels")
        elif kind in TEXT_CHUNKS:
            budget.count_chunk()
            name, text = _text_chunk(kind, payload, budget)
            found.setdefault(name.lower(), text)
    return found


def _chunk(kind: bytes, payload: bytes | memoryview) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def with_text_chunks(data: bytes, texts: dict[str, str], *, replace: tuple[str, ...]) -> bytes:
    """The same image with a tEXt chunk per `texts` item (ASCII), and the `replace` keywords removed."""
    dropped = {k.lower() for k in replace}
    out = [SIGNATURE]
    for kind, payload in chunks(data):
        if kind == b"IEND":
            out += [
                _chunk(b"tEXt", k.encode("latin-1") + b"\x00" + v.encode("ascii")) for k, v in texts.items()
            ]
        elif kind in TEXT_CHUNKS and keyword(payload).lower() in dropped:
            continue
        out.append(_chunk(kind, payload))
    return b"".join(out)


def plain_image(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A solid-colour RGB PNG."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = b"\x00" + bytes(rgb) * width
    pixels = zlib.compress(row * height, 9)
    return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", pixels) + _chunk(b"IEND", b"")
