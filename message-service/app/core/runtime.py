"""Everything a request or a job of message-service works with, made once at start-up."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.clients.fleet import Fleet
from app.config import Settings
from app.core.batch import Batcher
from app.models import Message
from app.repositories.analytics import AnalyticsRepository
from app.repositories.live import Live
from app.repositories.messages import MessageRepository

# A finished reply waiting to tell the others, with the message it answers when the job had it.
FollowUp = tuple[Message, Message | None]


def now() -> datetime:
    at = datetime.now(UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


@dataclass
class ChangesCursor:
    """Where this process stands in conversation-service's changes feed (services/conversation_cache)."""

    since_ms: int | None = None  # the next read's `since`: the last `until`, less the overlap
    read_at: float | None = None  # time.monotonic() of the last read applied to the cache
    failing: bool = False  # the last read failed (logged once until a read succeeds)


@dataclass
class Runtime:
    settings: Settings
    messages: MessageRepository
    live: Live
    fleet: Fleet
    analytics: AnalyticsRepository
    # Jobs running in this process, by reply id: a plain (not streamed) send waits on its task (its
    # result: the error that failed the reply, or None).
    jobs: dict[str, asyncio.Task[Any]] = field(default_factory=dict)
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    conversation_changes: ChangesCursor = field(default_factory=ChangesCursor)
    # Finished replies whose follow-ups go out with the next batch (services.followups).
    followups: Batcher[FollowUp] = field(init=False)

    def __post_init__(self) -> None:
        self.followups = Batcher(
            size=self.settings.follow_up_batch_size, seconds=self.settings.follow_up_batch_seconds
        )

    def spawn(self, coroutine: Coroutine[Any, Any, Any], *, reply_id: str | None = None) -> asyncio.Task[Any]:
        """Run `coroutine` apart from the request: a client that leaves does not stop it."""
        task = asyncio.ensure_future(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        if reply_id is not None:
            self.jobs[reply_id] = task
            task.add_done_callback(lambda _: self.jobs.pop(reply_id, None))
        return task
