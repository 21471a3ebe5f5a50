"""Server-sent events of a reply, read from its Redis stream: from the start, or after Last-Event-ID."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette.sse import EventSourceResponse

from app.core.runtime import Runtime
from app.models import Message
from app.schemas.message import public

TERMINAL = frozenset({"message.completed", "error"})
# Under the Redis client's socket timeout (5 s, app/main.py): a longer XREAD BLOCK raises TimeoutError
# while a slow model has sent nothing yet, and the stream breaks.
BLOCK_MS = 4_000


def _event(ident: str, name: str, data: dict[str, Any]) -> dict[str, str]:
    return {"id": ident, "event": name, "data": json.dumps(data, ensure_ascii=False)}


async def _from_stream(rt: Runtime, reply_id: str, after: str) -> AsyncIterator[dict[str, str]]:
    while True:
        events = await rt.live.read(reply_id, after, BLOCK_MS)
        if not events:
            reply = await rt.messages.get_by_str(reply_id)
            if reply is None or reply.status != "generating":
                if reply is not None and not await rt.live.stream_exists(reply_id):
                    for replayed in _replay(reply, after):
                        yield replayed
                return
            continue
        for ident, name, data in events:
            yield _event(ident, name, data)
            after = ident
            if name in TERMINAL:
                return


def _replay(reply: Message, after: str) -> list[dict[str, str]]:
    """A finished reply whose events expired from Redis: its text and its end, as two events."""
    events = [
        ("0-1", "delta", {"text": reply.content}),
        ("0-2", "message.completed", public(reply).model_dump(mode="json")),
    ]
    if reply.status == "failed" and reply.generation is not None:
        error = {"code": reply.generation.error_code, "message": reply.generation.error_message}
        events[1] = ("0-2", "error", error)
    return [_event(*event) for event in events if _after(event[0], after)]


def _after(ident: str, after: str) -> bool:
    def key(value: str) -> tuple[int, int]:
        millis, _, seq = value.partition("-")
        return (int(millis or 0), int(seq or 0))

    try:
        return key(ident) > key(after)
    except ValueError:
        return True


def sse(rt: Runtime, reply_id: str, after: str = "0") -> EventSourceResponse:
    """The reply's events after `after`. A client that goes away stops only its own reading."""
    return EventSourceResponse(_from_stream(rt, reply_id, after), ping=10)
