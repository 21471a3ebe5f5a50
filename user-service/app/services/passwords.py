"""Password hashing with bcrypt (through passlib), off the event loop, a bounded number at a time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
from anyio.to_thread import run_sync as run_in_threadpool
from passlib.context import CryptContext

from app.repositories.rate_limits import LoginLimiter
from app.schemas.user import BCRYPT_MAX_BYTES
from chat_common.errors import RateLimitedError


class PasswordHasher:
    """Hashes and verifies passwords; unknown users are checked against a dummy hash.

    At most `concurrency` hashes run at once (the others queue): bcrypt holds a core for its whole
    run, and more threads than cores would starve the event loop that answers every other request.
    """

    def __init__(self, rounds: int, *, concurrency: int = 1) -> None:
        self._context = CryptContext(schemes=["bcrypt"], bcrypt__rounds=rounds)
        self._dummy_hash = self._context.hash("dummy-password-for-timing")
        self.concurrency = concurrency
        self._slots = anyio.CapacityLimiter(concurrency)

    async def hash(self, password: str) -> str:
        return await run_in_threadpool(self._context.hash, password, limiter=self._slots)

    async def verify(self, password: str, password_hash: str | None) -> bool:
        """True when it matches. A missing hash or an over-long password costs a full check too."""
        too_long = len(password.encode()) > BCRYPT_MAX_BYTES
        if password_hash is None or too_long:
            await run_in_threadpool(self._context.verify, "x", self._dummy_hash, limiter=self._slots)
            return False
        return bool(
            await run_in_threadpool(self._context.verify, password, password_hash, limiter=self._slots)
        )


async def check_throttled(
    limiter: LoginLimiter, *, account: str, ip: str, check: Callable[[], Awaitable[bool]]
) -> bool:
    """Run a secret check after counting the attempt (429 when the account's or the IP's window is
    full). A right secret clears the account's failures; a wrong one stays counted."""
    attempt = await limiter.acquire(account, ip)
    if attempt.retry_after is not None:
        raise RateLimitedError(
            "Too many failed password attempts; try again later", retry_after=attempt.retry_after
        )
    valid = await check()
    if valid:
        await limiter.succeeded(attempt)
    return valid


async def verify_throttled(
    hasher: PasswordHasher,
    limiter: LoginLimiter,
    *,
    account: str,
    ip: str,
    password: str,
    password_hash: str | None,
) -> bool:
    """Check a password, throttled per account and per IP (`check_throttled`)."""
    return await check_throttled(
        limiter, account=account, ip=ip, check=lambda: hasher.verify(password, password_hash)
    )
