"""Server-sent events of a reply (app.services.events): from the start, or after Last-Event-ID."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from sse_starlette.sse import EventSourceResponse

from app.core.runtime import Runtime
from app.services.events import reply_events
from chat_common.openapi import event_stream

# A reply's events as the OpenAPI document shows them (README "Streamed replies (SSE)").
REPLY_EVENTS = event_stream(
    'A reply\'s events: `message.created`, then `delta` (and `reasoning`) pieces `{"text": ...}`, '
    "ending with `message.completed` (the stored reply) or `error` (`{code, message, details}`); "
    "ids are the reply's stream ids, for `Last-Event-ID`",
    events=["message.created", "delta", "reasoning", "message.completed", "error"],
    data={"type": "object"},
)
# The 200 of an operation that answers with the reply's events when asked to stream.
STREAMED_REPLY = {
    "description": "With `stream: true` or `Accept: text/event-stream`: the reply's events (SSE)",
    "content": {"text/event-stream": REPLY_EVENTS},
}


async def _sse(rt: Runtime, reply_id: str, after: str) -> AsyncIterator[dict[str, str]]:
    async for ident, name, data in reply_events(rt, reply_id, after):
        yield {"id": ident, "event": name, "data": json.dumps(data, ensure_ascii=False)}


def sse(rt: Runtime, reply_id: str, after: str = "0") -> EventSourceResponse:
    """The reply's events after `after`. A client that goes away stops only its own reading."""
    return EventSourceResponse(_sse(rt, reply_id, after), ping=10)
