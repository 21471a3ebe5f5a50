"""The service's clock: UTC, in milliseconds (what MongoDB keeps), and movable in tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        now = datetime.now(UTC) + self.offset
        return now.replace(microsecond=now.microsecond // 1000 * 1000)

    def advance(self, seconds: float) -> None:
        """Move time forward (tests of idle expiry)."""
        self.offset += timedelta(seconds=seconds)
