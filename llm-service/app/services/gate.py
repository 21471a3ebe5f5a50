"""A bounded concurrency gate toward LM Studio with a bounded wait queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from chat_common.errors import RateLimitedError, ServiceUnavailableError


class ConcurrencyGate:
    """At most `limit` requests reach LM Studio at once; `max_queue` more may wait; the rest get 429."""

    def __init__(self, limit: int, max_queue: int, *, queue_timeout: float, retry_after: int) -> None:
        self.limit = limit
        self.max_queue = max_queue
        self.queue_timeout = queue_timeout
        self.retry_after = retry_after
        self.active = 0
        self.waiting = 0
        self._semaphore = asyncio.Semaphore(limit)

    async def acquire(self) -> None:
        if self.active >= self.limit and self.waiting >= self.max_queue:
            raise RateLimitedError(
                f"LM Studio is busy: {self.active} requests running and {self.waiting} waiting",
                retry_after=self.retry_after,
                code="llm_busy",
            )
        self.waiting += 1
        try:
            await asyncio.wait_for(self._semaphore.acquire(), self.queue_timeout)
        except TimeoutError as exc:
            raise ServiceUnavailableError(
                f"Waited {self.queue_timeout:g}s for LM Studio without getting a turn",
                code="llm_busy",
                headers={"Retry-After": str(self.retry_after)},
            ) from exc
        finally:
            self.waiting -= 1
        self.active += 1

    def release(self) -> None:
        self.active -= 1
        self._semaphore.release()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()
