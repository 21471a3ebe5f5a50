"""Run the stand-in as a real process for tests, and steer it through its control endpoints."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class StandinProcess:
    """A stand-in server process and a handle on its `/__standin` controls."""

    def __init__(self, process: subprocess.Popen[bytes], url: str) -> None:
        self.process = process
        self.url = url

    def configure(self, **settings: Any) -> dict[str, Any]:
        response = httpx.patch(f"{self.url}/__standin/config", json=settings, timeout=5)
        response.raise_for_status()
        return dict(response.json())

    def stats(self) -> dict[str, int]:
        return dict(httpx.get(f"{self.url}/__standin/stats", timeout=5).json())

    def requests(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The requests LM Studio's routes received, oldest first: `method`, `path`, `query`, `body`
        (parsed JSON or None), `authorization` (whether the header was sent), `request_id`, `received_at`."""
        params = {"limit": limit} if limit is not None else {}
        response = httpx.get(f"{self.url}/__standin/requests", params=params, timeout=5)
        response.raise_for_status()
        return list(response.json())

    def clear_requests(self) -> None:
        httpx.delete(f"{self.url}/__standin/requests", timeout=5).raise_for_status()

    def reset(self) -> None:
        """Back to defaults, once the requests of the previous test have wound down."""
        deadline = time.monotonic() + 5
        while self.stats()["active"] and time.monotonic() < deadline:
            time.sleep(0.02)
        httpx.post(f"{self.url}/__standin/reset", timeout=5).raise_for_status()

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """The process stopped (SIGSTOP) for the block: connections open, nothing answers, as a hung
        LM Studio does. Resumed (SIGCONT) however the block ends."""
        self.process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)


@contextmanager
def run_standin(*args: str, port: int | None = None) -> Iterator[StandinProcess]:
    """`python -m lmstudio_client.standin` on a free loopback port until the block ends."""
    port = port or _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "lmstudio_client.standin", "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"{url}/__standin/stats", timeout=1)
            break
        except httpx.HTTPError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the LM Studio stand-in did not start") from None
            time.sleep(0.05)
    try:
        yield StandinProcess(process, url)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:  # a request still running keeps uvicorn from exiting
                process.kill()
                process.wait(10)
