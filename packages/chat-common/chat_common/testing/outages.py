"""Backends that die and come back, for outage tests: an embedded server SIGKILLed (as a crash or an
OOM kill would end it) and started again on the same port and data directory, and a clock for how
long a service takes to answer again once it is back."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from chat_common.embedded import EmbeddedServer, free_port, start_mongodb, start_postgres, start_redis

STARTERS: dict[str, Callable[[Path, int], EmbeddedServer]] = {
    "postgres": start_postgres,
    "redis": start_redis,  # persisted (append-only file): what was written before a kill is kept
    "mongodb": start_mongodb,
}


@dataclass
class RestartableServer:
    """An embedded server of `kind` ("postgres", "redis" or "mongodb") that a test can kill and start
    again: same port, same data directory, so the service under test keeps its URL."""

    kind: str
    data_dir: Path
    port: int = field(default_factory=free_port)
    server: EmbeddedServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None, "start() it first"
        return self.server.url

    def start(self) -> RestartableServer:
        self.server = STARTERS[self.kind](self.data_dir, self.port)
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, its clients' connections cut."""
        assert self.server is not None and self.server.process is not None
        self.server.process.send_signal(signal.SIGKILL)
        self.server.process.wait(30)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


@contextmanager
def restartable_server(kind: str, data_dir: Path) -> Iterator[RestartableServer]:
    """A `RestartableServer` running for the block, stopped at its end however it was left."""
    server = RestartableServer(kind, data_dir).start()
    try:
        yield server
    finally:
        server.stop()


async def seconds_until(
    succeeds: Callable[[], Awaitable[bool]], *, within: float = 60.0, interval: float = 0.1
) -> float:
    """How long until `succeeds()` is true (polled every `interval`); fails after `within` seconds. The
    recovery time of a service once its backend is back."""
    started = time.monotonic()
    while not await succeeds():
        if time.monotonic() - started > within:
            raise AssertionError(f"not recovered after {within:g}s")
        await asyncio.sleep(interval)
    return time.monotonic() - started
