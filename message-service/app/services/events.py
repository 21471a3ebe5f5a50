"""A reply's events for a client, from its Redis stream: from the start or after Last-Event-ID, to
its end (`message.completed` or `error`). A finished reply whose events expired from Redis, or whose
end never reached the stream (its process died between storing and publishing it), is told from
MongoDB; so is the end of a reply read while Redis is away (its job stores the whole text in MongoDB,
whatever became of its stream). A reader that needs MongoDB while it is away ends with an `error`
naming it: the reply goes on, and is read again once MongoDB is back."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from app.core.runtime import Runtime
from app.models import Message
from app.schemas.message import public
from chat_common.mongo import UNAVAILABLE as MONGODB_UNAVAILABLE
from chat_common.redis import UNAVAILABLE as REDIS_UNAVAILABLE

Event = tuple[str, str, dict[str, Any]]  # (id, name, data)
# The end of a reply purged with its deleted conversation while it generated (or was being read).
GONE = {"code": "conversation_deleted", "message": "The conversation was deleted"}
MONGODB_AWAY = {
    "code": "dependency_unavailable",
    "message": "MongoDB is unavailable: read the reply again shortly",
    "details": {"service": "mongodb"},
}
TERMINAL = frozenset({"message.completed", "error"})
# A blocking read waits at most this long, well under the Redis client's socket timeout (5 s).
BLOCK_MS = 1_000
# A job publishes its end just after storing it: how long a reader waits for it before telling it
# from storage instead.
END_GRACE_SECONDS = 2.0
# How often a reader whose Redis is away looks in MongoDB for the reply's end.
REDIS_AWAY_POLL_SECONDS = 0.5


async def reply_events(rt: Runtime, reply_id: str, after: str) -> AsyncIterator[Event]:
    last = after
    try:
        async with contextlib.aclosing(_events(rt, reply_id, after)) as events:
            async for event in events:
                last = event[0]
                yield event
    except MONGODB_UNAVAILABLE:
        yield last, "error", MONGODB_AWAY


async def _events(rt: Runtime, reply_id: str, after: str) -> AsyncGenerator[Event, None]:
    block: int | None = None  # the first read does not wait: a finished reply answers at once
    finished_at: float | None = None
    while True:
        try:
            events = await rt.live.read(reply_id, after, block)
        except REDIS_UNAVAILABLE:
            end = await _stored_end(rt, reply_id, after)
            if end is not None:
                yield end
                return
            await asyncio.sleep(REDIS_AWAY_POLL_SECONDS)  # still generating: its end comes to MongoDB
            continue
        block = BLOCK_MS
        for ident, name, data in events:
            yield ident, name, data
            after = ident
            if name in TERMINAL:
                return
        if events or reply_id in rt.jobs:  # its job runs here: its next events are on their way
            continue
        reply = await rt.messages.get_by_str(reply_id)
        if reply is None:  # purged with its deleted conversation while it was being read
            yield after, "error", GONE
            return
        if reply.status == "generating":
            continue
        last = await rt.live.last_event(reply_id)
        if last is None:  # its events expired: replay what was stored
            for event in _replay(reply, after):
                yield event
            return
        if last[1] in TERMINAL:  # the client had every event already
            return
        finished_at = finished_at or time.monotonic()
        if time.monotonic() - finished_at > END_GRACE_SECONDS:
            yield _end_of(reply, after)
            return
        await asyncio.sleep(0.05)


async def _stored_end(rt: Runtime, reply_id: str, after: str) -> Event | None:
    """The reply's end as stored, None while it is generating."""
    reply = await rt.messages.get_by_str(reply_id)
    if reply is None:
        return after, "error", GONE
    return None if reply.status == "generating" else _end_of(reply, after)


def _end_of(reply: Message, ident: str) -> Event:
    if reply.status == "failed" and reply.generation is not None:
        generation = reply.generation
        error = {
            "code": generation.error_code,
            "message": generation.error_message,
            "details": generation.error_details,
        }
        return ident, "error", error
    return ident, "message.completed", public(reply).model_dump(mode="json")


def _replay(reply: Message, after: str) -> list[Event]:
    """A finished reply whose events expired from Redis: its text (unless the client had some of it:
    the end carries the whole text) and its end."""
    events = [] if after != "0" else [("0-1", "delta", {"text": reply.content})]
    return [*events, _end_of(reply, "0-2")]
