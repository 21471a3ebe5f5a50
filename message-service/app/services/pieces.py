"""A reply's pieces on their way to its Redis stream: in order, and merged while Redis is busy.

A model (or the stand-in) can send pieces faster than one XADD per piece goes: the pieces that arrive
while the previous publish is in flight are sent together, consecutive pieces of the same kind (`delta`
or `reasoning`) joined into one event. The generation loop does not wait for Redis; `flush` does.

The stream only carries the reply to its readers: the job keeps the text and stores it in MongoDB at
the end. So Redis away loses pieces for the readers of that moment (the reply's end, from Redis or from
MongoDB, carries the whole text), never the reply.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from app.repositories.live import Live
from chat_common.redis import UNAVAILABLE as REDIS_UNAVAILABLE

logger = logging.getLogger(__name__)


def merged(pieces: list[tuple[str, str]]) -> list[tuple[str, dict[str, Any]]]:
    """Consecutive pieces of the same kind joined, order kept."""
    events: list[tuple[str, list[str]]] = []
    for name, text in pieces:
        if events and events[-1][0] == name:
            events[-1][1].append(text)
        else:
            events.append((name, [text]))
    return [(name, {"text": "".join(texts)}) for name, texts in events]


class PiecePublisher:
    def __init__(self, live: Live, reply_id: str) -> None:
        self.live = live
        self.reply_id = reply_id
        self._pending: list[tuple[str, str]] = []
        self._task: asyncio.Future[None] | None = None
        self.lost = 0  # pieces that could not reach the stream (Redis away)

    def add(self, name: str, text: str) -> None:
        """Queue a piece; a failed earlier publish (other than Redis away) is raised here."""
        if self._task is not None and self._task.done():
            self._task.result()
        self._pending.append((name, text))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        while self._pending:
            pieces, self._pending = self._pending, []
            events = merged(pieces)
            try:
                if len(events) == 1:
                    await self.live.publish(self.reply_id, *events[0])
                else:
                    await self.live.publish_many(self.reply_id, events)
            except REDIS_UNAVAILABLE as exc:
                if not self.lost:
                    logger.warning("reply %s: pieces not streamed, Redis is away (%s)", self.reply_id, exc)
                self.lost += len(pieces)

    async def flush(self) -> None:
        """Every piece added so far is in the stream, or lost to a Redis outage (any other failure of
        its publish is raised here)."""
        if self._task is not None:
            await self._task
