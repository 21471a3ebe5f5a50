"""Where a token verifier finds public keys: in-process (user-service), or user-service's JWKS over HTTP."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import httpx

from chat_common.errors import ServiceUnavailableError

logger = logging.getLogger(__name__)


class KeySource(Protocol):
    async def get_key(self, kid: str) -> dict[str, Any] | None:
        """The JWK named `kid`; None when the issuer has no such key. Raises ServiceUnavailableError
        when the issuer's keys cannot be known right now."""
        ...


class StaticKeySource:
    """Keys known in-process (user-service verifies its own tokens this way)."""

    def __init__(self, jwks: Callable[[], dict[str, Any]]) -> None:
        self._jwks = jwks

    async def get_key(self, kid: str) -> dict[str, Any] | None:
        return next((k for k in self._jwks()["keys"] if k.get("kid") == kid), None)


def auth_unavailable(retry_after: float) -> ServiceUnavailableError:
    return ServiceUnavailableError(
        "Cannot verify tokens: the signing keys of user-service (its JWKS) are unavailable",
        code="auth_unavailable",
        details={"service": "user-service"},  # named like every failing dependency
        headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
    )


def parse_jwks(body: Any) -> dict[str, dict[str, Any]]:
    """The RSA keys of a JWKS document by kid; ValueError when it is not one."""
    if not isinstance(body, dict) or not isinstance(body.get("keys"), list):
        raise ValueError("not a JWKS document")
    return {
        key["kid"]: key
        for key in body["keys"]
        if isinstance(key, dict)
        and isinstance(key.get("kid"), str)
        and key.get("kty") == "RSA"
        and isinstance(key.get("n"), str)
        and isinstance(key.get("e"), str)
    }


class JWKSKeySource:
    """Keys fetched from a JWKS URL and cached; an outage of that URL never stalls requests.

    - A known kid is answered from the cache, even a stale one: once `cache_seconds` have passed a
      refresh runs in the background, so no request waits for it.
    - An unknown kid waits for one shared refetch (keys rotate), at most one per `min_refetch_seconds`
      after a successful fetch; otherwise it is unknown (None).
    - A failed fetch backs off (`backoff_seconds`, doubling up to `max_backoff_seconds`). Until the next
      try no request touches the network: known kids keep working, and a kid not in the cache is 503
      `auth_unavailable` at once, since the key set cannot be known.
    """

    def __init__(
        self,
        url: str,
        *,
        cache_seconds: float = 300,
        min_refetch_seconds: float = 5.0,
        timeout_seconds: float = 3.0,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.cache_seconds = cache_seconds
        self.min_refetch_seconds = min_refetch_seconds
        self.timeout_seconds = timeout_seconds
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.transport = transport
        self._clock = clock
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at: float | None = None  # of the last successful fetch
        self._failures = 0  # in a row, since the last success
        self._retry_at = 0.0  # no fetch before this while backing off
        self._fetch: asyncio.Task[None] | None = None

    async def get_key(self, kid: str) -> dict[str, Any] | None:
        now = self._clock()
        key = self._keys.get(kid)
        if key is not None:
            if self._fetched_at is None or now - self._fetched_at >= self.cache_seconds:
                self._start_fetch(now)
            return key
        throttled = (
            not self._failures
            and self._fetched_at is not None
            and now - self._fetched_at < self.min_refetch_seconds
        )
        fetch = self._running_fetch() if throttled else self._start_fetch(now)
        if fetch is not None:
            await asyncio.shield(fetch)
        key = self._keys.get(kid)
        if key is None and self._failures:
            raise auth_unavailable(self._retry_at - self._clock())
        return key

    def _running_fetch(self) -> asyncio.Task[None] | None:
        fetch = self._fetch
        if fetch is None or fetch.done() or fetch.get_loop() is not asyncio.get_running_loop():
            return None
        return fetch

    def _start_fetch(self, now: float) -> asyncio.Task[None] | None:
        """The fetch in flight, or a new one unless backing off (then None)."""
        running = self._running_fetch()
        if running is not None or now < self._retry_at:
            return running
        self._fetch = asyncio.get_running_loop().create_task(self._refresh())
        return self._fetch

    async def _refresh(self) -> None:
        try:
            async with (
                asyncio.timeout(self.timeout_seconds),
                httpx.AsyncClient(timeout=self.timeout_seconds, transport=self.transport) as client,
            ):
                response = await client.get(self.url)
                response.raise_for_status()
                keys = parse_jwks(response.json())
        except Exception as exc:  # any failure (a bad URL too) must back off, never reach requests
            self._failures += 1
            delay = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** min(self._failures - 1, 30))
            self._retry_at = self._clock() + delay
            logger.warning(
                "JWKS fetch from %s failed (%s: %s); %d cached key(s) in use, next try in %.1f s",
                self.url,
                type(exc).__name__,
                str(exc) or "no detail",
                len(self._keys),
                delay,
            )
            return
        self._keys = keys
        self._fetched_at = self._clock()
        self._failures = 0
        self._retry_at = 0.0
