"""The conversations message-service reads from conversation-service, cached in Redis (shared by every
replica; kept CONVERSATION_CACHE_SECONDS from their last use) and kept true by conversation-service's
changes feed.

Every CONVERSATION_CHANGES_POLL_SECONDS each replica reads the ids of the conversations changed
(PATCHed, character refreshed, deleted) since its last read, less an overlap, and forgets them: a
change reaches the next send within about a poll. The overlap re-reads a change for a few seconds,
which also covers a change written late and a cached copy read before a change but stored after its
first forgetting (a copy whose read took longer than the overlap is not stored). When the feed names
more than it returns, every replica's cache of conversations starts over (a new generation of its
keys); while the feed cannot be read for CONVERSATION_CHANGES_MAX_LAG_SECONDS, the cache is not used.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from app.core.runtime import Runtime

logger = logging.getLogger(__name__)

KIND = "conversation"


def enabled(rt: Runtime) -> bool:
    return rt.settings.conversation_cache_seconds > 0


def trusted(rt: Runtime) -> bool:
    """Whether the cache may answer: the feed was read lately enough that what it holds is true."""
    read_at = rt.conversation_changes.read_at
    return (
        enabled(rt)
        and read_at is not None
        and time.monotonic() - read_at <= rt.settings.conversation_changes_max_lag_seconds
    )


async def read(rt: Runtime, conversation_id: str) -> dict[str, Any]:
    """conversation-service's answer for the conversation (deleted or not; 404 when unknown), from the
    cache when it may answer."""
    seconds = rt.settings.conversation_cache_seconds
    if trusted(rt):
        # kept while in use: the feed, not the lifetime, is what keeps a cached conversation true
        found: dict[str, Any] | None = await rt.live.cached(KIND, conversation_id, renew_seconds=seconds)
        if found is not None:
            return found
    started = time.monotonic()
    found = await rt.fleet.conversation(conversation_id)
    # A read slower than the overlap could miss being forgotten after a change made while it ran.
    if trusted(rt) and time.monotonic() - started < rt.settings.conversation_changes_overlap_seconds:
        await rt.live.cache(KIND, conversation_id, found, seconds)
    return found


async def apply_changes(rt: Runtime) -> None:
    """Read the changes feed once and forget what it names (everything, when it could not name all)."""
    cursor = rt.conversation_changes
    settings = rt.settings
    overlap_ms = int(settings.conversation_changes_overlap_seconds * 1000)
    if cursor.since_ms is None:  # a start: whatever is cached was stored or used within its lifetime
        cursor.since_ms = int((time.time() - settings.conversation_cache_seconds) * 1000) - overlap_ms
    asked_at = time.monotonic()  # what the feed names is true as of then, not as of its answer
    feed = await rt.fleet.changed_conversations(cursor.since_ms)
    if feed["complete"]:
        await rt.live.use_cache_generation(KIND)
        await rt.live.forget(KIND, *feed["ids"])
    else:
        generation = await rt.live.use_cache_generation(KIND, new=True)
        logger.info(
            "more conversations changed than the feed names: their cache starts over (%d)", generation
        )
    cursor.since_ms = int(feed["until"]) - overlap_ms
    cursor.read_at = asked_at


async def follow_changes(rt: Runtime) -> None:
    """`apply_changes` every CONVERSATION_CHANGES_POLL_SECONDS, for as long as the process runs."""
    cursor = rt.conversation_changes
    while True:
        try:
            await apply_changes(rt)
            if cursor.failing:
                logger.info("conversation-service's changes feed is read again")
            cursor.failing = False
        except Exception as exc:  # conversation-service or Redis away: the next round tries again
            if not cursor.failing:
                logger.warning("conversation changes not read (%s: %s)", exc.__class__.__name__, exc)
            cursor.failing = True
        await asyncio.sleep(rt.settings.conversation_changes_poll_seconds)
