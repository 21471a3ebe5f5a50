"""Password hashing with bcrypt (through passlib), always off the event loop."""

from __future__ import annotations

from anyio.to_thread import run_sync as run_in_threadpool
from passlib.context import CryptContext

BCRYPT_MAX_BYTES = 72


class PasswordHasher:
    """Hashes and verifies passwords; unknown users are checked against a dummy hash."""

    def __init__(self, rounds: int) -> None:
        self._context = CryptContext(schemes=["bcrypt"], bcrypt__rounds=rounds)
        self._dummy_hash = self._context.hash("dummy-password-for-timing")

    async def hash(self, password: str) -> str:
        return await run_in_threadpool(self._context.hash, password)

    async def verify(self, password: str, password_hash: str | None) -> bool:
        """True when it matches. A missing hash or an over-long password costs a full check too."""
        too_long = len(password.encode()) > BCRYPT_MAX_BYTES
        if password_hash is None or too_long:
            await run_in_threadpool(self._context.verify, "x", self._dummy_hash)
            return False
        return bool(await run_in_threadpool(self._context.verify, password, password_hash))
