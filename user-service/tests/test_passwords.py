"""Password hashing runs off the event loop, at most PASSWORD_HASH_CONCURRENCY hashes at a time."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

from fastapi import FastAPI

from app.config import Settings
from app.services.passwords import PasswordHasher


class CountingContext:
    """Wraps the real passlib context and records how many of its calls run at the same time."""

    def __init__(self, context: Any) -> None:
        self._context = context
        self._lock = threading.Lock()
        self.running = 0
        self.most = 0

    def _enter(self) -> None:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)

    def _leave(self) -> None:
        with self._lock:
            self.running -= 1

    def hash(self, password: str) -> str:
        self._enter()
        try:
            time.sleep(0.3)  # long enough that queued calls would overlap if they were let through
            return str(self._context.hash(password))
        finally:
            self._leave()

    def verify(self, password: str, password_hash: str) -> bool:
        self._enter()
        try:
            time.sleep(0.3)
            return bool(self._context.verify(password, password_hash))
        finally:
            self._leave()


async def test_no_more_hashes_run_at_once_than_the_limit() -> None:
    hasher = PasswordHasher(4, concurrency=2)
    stored = await hasher.hash("Sturdy-pass-2024")
    counting = CountingContext(hasher._context)
    hasher._context = counting  # type: ignore[assignment]
    results = await asyncio.gather(
        *[hasher.verify("Sturdy-pass-2024", stored) for _ in range(5)],
        *[hasher.verify("Wrong-pass-2024", stored) for _ in range(3)],
        *[hasher.verify("Whatever-1", None) for _ in range(2)],
        *[hasher.hash("Other-pass-2024") for _ in range(2)],
    )
    assert results[:10] == [True] * 5 + [False] * 5
    assert counting.most == 2
    assert counting.running == 0


async def test_one_hash_at_a_time_when_the_limit_is_one() -> None:
    hasher = PasswordHasher(4, concurrency=1)
    counting = CountingContext(hasher._context)
    hasher._context = counting  # type: ignore[assignment]
    await asyncio.gather(*[hasher.hash("Sturdy-pass-2024") for _ in range(4)])
    assert counting.most == 1


def test_the_default_limit_is_the_cores_minus_one_and_at_least_one() -> None:
    cores = len(os.sched_getaffinity(0))
    assert Settings().password_hash_concurrency == max(1, cores - 1)


async def test_the_service_hashes_with_the_configured_limit(app: FastAPI, settings: Settings) -> None:
    assert app.state.auth.hasher.concurrency == settings.password_hash_concurrency
