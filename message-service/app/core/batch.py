"""Work gathered in memory and handed over together: when `size` items wait, or `seconds` after the
first of them arrived."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
Handler = Callable[[list[T]], Awaitable[object]]

# How many batches may wait in memory while one is being handled; past it, `add` refuses (the caller
# has the work stored, and something else picks it up later).
BACKLOG_BATCHES = 20


class Batcher(Generic[T]):
    def __init__(self, *, size: int, seconds: float) -> None:
        self.size = size
        self.seconds = seconds
        self._items: dict[str, T] = {}
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()

    def add(self, key: str, item: T) -> bool:
        """Queue `item` (one per key: a later one replaces it); False when the backlog is full."""
        if key not in self._items and len(self._items) >= self.size * BACKLOG_BATCHES:
            return False
        self._items[key] = item
        self._arrived.set()
        if len(self._items) >= self.size:
            self._full.set()
        return True

    def _take(self) -> list[T]:
        keys = list(self._items)[: self.size]
        taken = [self._items.pop(key) for key in keys]
        if len(self._items) < self.size:
            self._full.clear()
        if not self._items:
            self._arrived.clear()
        return taken

    async def run(self, handle: Handler[T]) -> None:
        """Hand over batches for ever, one at a time: what arrives meanwhile waits for the next one."""
        while True:
            await self._arrived.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self.seconds)
            await self._handle(handle, self._take())

    async def drain(self, handle: Handler[T]) -> None:
        """Hand over everything waiting now (at shutdown)."""
        while self._items:
            await self._handle(handle, self._take())

    @staticmethod
    async def _handle(handle: Handler[T], items: list[T]) -> None:
        try:
            await handle(items)
        except Exception:  # a backend away or a bug: logged; the caller's stored state retries it
            logger.exception("a batch of %d failed", len(items))
