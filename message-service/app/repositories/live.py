"""Redis: reply event streams, stop flags, the per-conversation generation lock, per-user limits and
short-lived caches. Shared by every replica, so any of them can stream, stop or refuse."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from limits import RateLimitItemPerMinute
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis

from chat_common.redis import UNAVAILABLE

logger = logging.getLogger(__name__)

# A reply's start: the conversation's lock (KEYS[1]), then a place among the user's running
# generations (KEYS[2]); neither is taken unless both are. 1: taken, 0: the lock is held, -1: no place.
_START = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then
  redis.call('DEL', KEYS[1])
  return -1
end
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
return 1
"""
# A reply's end: its place freed, and the lock deleted while it is still ours.
_END = """
redis.call('ZREM', KEYS[2], ARGV[2])
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# A place among the user's running generations alone (KEYS[1]), for work that holds no conversation
# lock (impersonation). 1: taken, 0: no place.
_SLOT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""
# Delete or extend a lock only while it is still ours.
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
_RENEW = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
)

Event = tuple[str, str, dict[str, Any]]  # (id, name, data)


def _event(entry: Any) -> Event:
    entry_id, fields = entry
    return entry_id.decode(), fields[b"event"].decode(), json.loads(fields[b"data"])


class Live:
    def __init__(self, redis: Redis, redis_url: str, prefix: str, *, messages_per_minute: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.per_minute = RateLimitItemPerMinute(messages_per_minute)
        # The `limits` library's moving window, on the same Redis (and connections): shared by every
        # replica, and through a Redis restart like every other command.
        storage = RedisStorage(
            f"async+{redis_url}",
            implementation="redispy",
            key_prefix=f"{prefix}:limits",
            connection_pool=redis.connection_pool,
        )
        self.limiter = MovingWindowRateLimiter(storage)
        self._start = redis.register_script(_START)
        self._end = redis.register_script(_END)
        self._slot = redis.register_script(_SLOT)
        self._release = redis.register_script(_RELEASE)
        self._renew = redis.register_script(_RENEW)
        # kind -> the generation its cache keys carry (set by `use_cache_generation`): raising it in
        # Redis forgets every entry of that kind at once, on every replica that reads it.
        self.cache_generations: dict[str, int] = {}

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    async def ping(self) -> None:
        await self.redis.ping()

    # Limits.

    async def hit_message_limit(self, user_id: str) -> tuple[bool, int, int]:
        """Count a message against the user's per-minute window: (allowed, remaining, reset epoch s)."""
        allowed = await self.limiter.hit(self.per_minute, "messages", user_id)
        stats = await self.limiter.get_window_stats(self.per_minute, "messages", user_id)
        return allowed, stats.remaining, int(stats.reset_time)

    async def start_generation(
        self, conversation_id: str, user_id: str, job_id: str, cap: int, lease_seconds: float
    ) -> str | int:
        """The conversation's lock and a place among the user's running generations (at most `cap`),
        in one round trip: the lock's token, or 0 when the lock is held, -1 when no place is free
        (then neither is taken)."""
        token = uuid.uuid4().hex
        now_ms = int(time.time() * 1000)
        lease_ms = int(lease_seconds * 1000)
        keys = [self._key("generating", conversation_id), self._key("running", user_id)]
        taken = int(
            await self._start(
                keys=keys, args=[token, lease_ms, now_ms, cap, now_ms + lease_ms, job_id, lease_ms * 2]
            )
        )
        return token if taken == 1 else taken

    async def end_generation(self, conversation_id: str, token: str, user_id: str, job_id: str) -> None:
        """The place freed and the lock released (while it is still `token`'s), in one round trip."""
        keys = [self._key("generating", conversation_id), self._key("running", user_id)]
        await self._end(keys=keys, args=[token, job_id])

    async def take_generation_slot(self, user_id: str, job_id: str, cap: int, lease_seconds: float) -> bool:
        """A place among the user's running generations (at most `cap`), without a conversation lock."""
        now_ms = int(time.time() * 1000)
        lease_ms = int(lease_seconds * 1000)
        args: list[int | str] = [now_ms, cap, now_ms + lease_ms, job_id, lease_ms * 2]
        return bool(await self._slot(keys=[self._key("running", user_id)], args=args))

    async def free_generation_slot(self, user_id: str, job_id: str) -> None:
        await self.redis.zrem(self._key("running", user_id), job_id)

    async def renew_generation_slot(self, user_id: str, job_id: str, lease_seconds: float) -> None:
        expires = int((time.time() + lease_seconds) * 1000)
        await self.redis.zadd(self._key("running", user_id), {job_id: expires}, xx=True)

    async def lock_conversation(self, conversation_id: str, lease_seconds: float) -> str | None:
        """One generation at a time per conversation: a token to release with, or None when held."""
        token = uuid.uuid4().hex
        key = self._key("generating", conversation_id)
        taken = await self.redis.set(key, token, nx=True, px=int(lease_seconds * 1000))
        return token if taken else None

    async def renew_conversation_lock(self, conversation_id: str, token: str, lease_seconds: float) -> None:
        await self._renew(
            keys=[self._key("generating", conversation_id)], args=[token, int(lease_seconds * 1000)]
        )

    async def unlock_conversation(self, conversation_id: str, token: str) -> None:
        await self._release(keys=[self._key("generating", conversation_id)], args=[token])

    # Reply streams.

    async def publish(self, reply_id: str, name: str, data: dict[str, Any]) -> str:
        entry = await self.redis.xadd(
            self._key("stream", reply_id), {"event": name, "data": json.dumps(data, ensure_ascii=False)}
        )
        return entry.decode() if isinstance(entry, bytes) else str(entry)

    async def publish_many(self, reply_id: str, events: list[tuple[str, dict[str, Any]]]) -> None:
        """Several events in order, in one round trip."""
        key = self._key("stream", reply_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for name, data in events:
                pipe.xadd(key, {"event": name, "data": json.dumps(data, ensure_ascii=False)})
            await pipe.execute()

    async def publish_end(self, reply_id: str, name: str, data: dict[str, Any], retain_seconds: int) -> None:
        """A reply's last event, and its stream kept `retain_seconds` more, in one round trip."""
        key = self._key("stream", reply_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(key, {"event": name, "data": json.dumps(data, ensure_ascii=False)})
            pipe.expire(key, retain_seconds)
            await pipe.execute()

    async def read(self, reply_id: str, after: str, block_ms: int | None) -> list[Event]:
        """Events after the stream id `after` ("0" for all), waiting up to `block_ms` for some (None:
        not waiting). `block_ms` must stay under the client's socket timeout."""
        found: Any = await self.redis.xread({self._key("stream", reply_id): after}, block=block_ms, count=500)
        return [_event(entry) for _, entries in found or [] for entry in entries]

    async def last_event(self, reply_id: str) -> Event | None:
        """The newest event of the reply's stream; None when it has none (expired or never made)."""
        found: Any = await self.redis.xrevrange(self._key("stream", reply_id), count=1)
        return _event(found[0]) if found else None

    async def request_stop(self, reply_id: str, seconds: int) -> None:
        await self.redis.set(self._key("stop", reply_id), "1", ex=seconds)

    async def stop_requested(self, reply_id: str) -> bool:
        return bool(await self.redis.exists(self._key("stop", reply_id)))

    async def restart_reply(self, reply_id: str) -> None:
        """A finished reply about to generate again (continue): its old events and any stop asked of
        its last generation are forgotten, so neither ends the new one."""
        await self.redis.delete(self._key("stream", reply_id), self._key("stop", reply_id))

    # Caches.

    def _cache_key(self, kind: str, key: str) -> str:
        generation = self.cache_generations.get(kind)
        return (
            self._key("cache", kind, key)
            if generation is None
            else self._key("cache", kind, f"g{generation}", key)
        )

    async def cached(self, kind: str, key: str, *, renew_seconds: float = 0) -> Any:
        """The cached value, or None; with `renew_seconds`, it is kept that long again from now.
        With Redis away it is a miss: the caller reads the source, so what needs no Redis works on."""
        cache_key = self._cache_key(kind, key)
        try:
            if renew_seconds > 0:
                raw = await self.redis.getex(cache_key, px=max(1, int(renew_seconds * 1000)))
            else:
                raw = await self.redis.get(cache_key)
        except UNAVAILABLE as exc:
            logger.warning("cache of %s not read, Redis is away (%s)", kind, exc.__class__.__name__)
            return None
        return None if raw is None else json.loads(raw)

    async def cache(self, kind: str, key: str, value: Any, seconds: float) -> None:
        """Kept `seconds`; not kept when Redis is away (the next read goes to the source again)."""
        if seconds > 0:
            try:
                await self.redis.set(
                    self._cache_key(kind, key), json.dumps(value), px=max(1, int(seconds * 1000))
                )
            except UNAVAILABLE as exc:
                logger.warning("%s not cached, Redis is away (%s)", kind, exc.__class__.__name__)

    async def forget(self, kind: str, *keys: str) -> None:
        if keys:
            await self.redis.delete(*(self._cache_key(kind, key) for key in keys))

    async def use_cache_generation(self, kind: str, *, new: bool = False) -> int:
        """Key the `kind` cache by its generation in Redis from now on (`new`: a new one, which every
        replica's `kind` cache then starts empty under); the generation."""
        key = self._key("cache-generation", kind)
        generation = int(await self.redis.incr(key) if new else await self.redis.get(key) or 0)
        self.cache_generations[kind] = generation
        return generation

    # Calibration and sweeps.

    async def get_json(self, *parts: str) -> Any:
        raw = await self.redis.get(self._key(*parts))
        return None if raw is None else json.loads(raw)

    async def set_json(self, value: Any, *parts: str) -> None:
        await self.redis.set(self._key(*parts), json.dumps(value))
