"""Server-sent events of a reply (app.services.events): from the start, or after Last-Event-ID."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from sse_starlette.sse import EventSourceResponse

from app.core.runtime import Runtime
from app.services.events import reply_events


async def _sse(rt: Runtime, reply_id: str, after: str) -> AsyncIterator[dict[str, str]]:
    async for ident, name, data in reply_events(rt, reply_id, after):
        yield {"id": ident, "event": name, "data": json.dumps(data, ensure_ascii=False)}


def sse(rt: Runtime, reply_id: str, after: str = "0") -> EventSourceResponse:
    """The reply's events after `after`. A client that goes away stops only its own reading."""
    return EventSourceResponse(_sse(rt, reply_id, after), ping=10)
