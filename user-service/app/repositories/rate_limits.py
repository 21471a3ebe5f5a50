"""Failed-login counters in Redis (moving windows, from the `limits` library)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

from limits import parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from chat_common.errors import ServiceUnavailableError


@contextmanager
def _redis_errors() -> Iterator[None]:
    try:
        yield
    except StorageError as exc:
        raise ServiceUnavailableError(
            "Redis is unavailable", code="dependency_unavailable", details={"service": "redis"}
        ) from exc


class LoginLimiter:
    """Counts failed logins per account and per client IP; refuses once either window is full."""

    def __init__(self, redis_url: str, *, prefix: str, per_account: str, per_ip: str) -> None:
        url = redis_url.replace("redis://", "async+redis://", 1)
        self.storage = RedisStorage(
            url, implementation="redispy", key_prefix=f"{prefix}:login", wrap_exceptions=True
        )
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.per_account = parse(per_account)
        self.per_ip = parse(per_ip)

    def _windows(self, account: str, ip: str) -> list[tuple[object, tuple[str, ...]]]:
        return [(self.per_account, ("account", account.lower())), (self.per_ip, ("ip", ip))]

    async def retry_after(self, account: str, ip: str) -> int | None:
        """Seconds until a new attempt is allowed, or None when it is allowed now."""
        with _redis_errors():
            return await self._retry_after(account, ip)

    async def _retry_after(self, account: str, ip: str) -> int | None:
        waits = []
        for item, keys in self._windows(account, ip):
            if not await self.limiter.test(item, *keys):  # type: ignore[arg-type]
                stats = await self.limiter.get_window_stats(item, *keys)  # type: ignore[arg-type]
                waits.append(max(1, math.ceil(stats.reset_time - time.time())))
        return max(waits) if waits else None

    async def record_failure(self, account: str, ip: str) -> None:
        with _redis_errors():
            for item, keys in self._windows(account, ip):
                await self.limiter.hit(item, *keys)  # type: ignore[arg-type]

    async def ping(self) -> None:
        if not await self.storage.check():
            raise ConnectionError("Redis does not answer")
