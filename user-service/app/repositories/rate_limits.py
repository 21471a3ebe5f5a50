"""Password-attempt counters in Redis: moving windows per account and per client IP.

An attempt is counted before its password is checked, in one Lua script that tests both windows
and records the attempt in both or in neither, so parallel guesses cannot all pass a check made
before any of them was recorded. A right password then forgives the account's failures and takes
its own attempt back from the IP's window: only failures (and checks still running) count.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from limits import parse
from redis.exceptions import RedisError

from chat_common.errors import ServiceUnavailableError
from chat_common.redis import redis_client

# KEYS: one sorted set per window. ARGV: the attempt's id, then each window's limit and length (ms).
# Returns 0 when the attempt was recorded in every window, else milliseconds until one has room.
_ACQUIRE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local wait = 0
for i, key in ipairs(KEYS) do
    local limit, window = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    if redis.call('ZCARD', key) >= limit then
        local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
        local since = oldest[2] and tonumber(oldest[2]) or now
        wait = math.max(wait, since + window - now)
    end
end
if wait > 0 then
    return wait
end
for i, key in ipairs(KEYS) do
    redis.call('ZADD', key, now, ARGV[1])
    redis.call('PEXPIRE', key, ARGV[2 * i + 1])
end
return 0
"""


@contextmanager
def _redis_errors() -> Iterator[None]:
    try:
        yield
    except RedisError as exc:
        raise ServiceUnavailableError(
            "Redis is unavailable", code="dependency_unavailable", details={"service": "redis"}
        ) from exc


@dataclass(frozen=True)
class Attempt:
    """One password check; `retry_after` (seconds) is set when it was refused, not counted."""

    account_key: str
    ip_key: str
    attempt_id: str
    retry_after: int | None


class LoginLimiter:
    """Counts password attempts per account and per client IP; refuses once either window is full."""

    def __init__(self, redis_url: str, *, prefix: str, per_account: str, per_ip: str) -> None:
        self.redis = redis_client(redis_url, connect_timeout=5)
        self._acquire = self.redis.register_script(_ACQUIRE)
        self.prefix = f"{prefix}:login"
        self.per_account = parse(per_account)
        self.per_ip = parse(per_ip)

    async def acquire(self, account: str, ip: str) -> Attempt:
        """Record an attempt in both windows, or in neither when one of them is full."""
        keys = [f"{self.prefix}:account:{account.lower()}", f"{self.prefix}:ip:{ip}"]
        attempt_id = uuid.uuid4().hex
        args = [attempt_id]
        for item in (self.per_account, self.per_ip):
            args += [str(item.amount), str(item.get_expiry() * 1000)]
        with _redis_errors():
            wait_ms = int(await self._acquire(keys=keys, args=args))
        retry_after = max(1, math.ceil(wait_ms / 1000)) if wait_ms else None
        return Attempt(keys[0], keys[1], attempt_id, retry_after)

    async def succeeded(self, attempt: Attempt) -> None:
        """The password was right: clear the account's window and take this attempt off the IP's."""
        with _redis_errors():
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(attempt.account_key)
                pipe.zrem(attempt.ip_key, attempt.attempt_id)
                await pipe.execute()

    async def ping(self) -> None:
        await self.redis.ping()

    async def close(self) -> None:
        await self.redis.aclose()
