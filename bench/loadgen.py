"""Load tools shared by the benchmarks: a lean keep-alive HTTP/1.1 client, latency stats, hello-world.

The client is deliberately minimal (raw asyncio streams, one connection per worker) so that on a
2-core machine the measuring side costs far less than the service it measures.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

HELLO_APP = """
from fastapi import FastAPI
app = FastAPI()
@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"message": "hello"}
"""


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    def summary(self) -> str:
        mean = statistics.fmean(self.latencies) * 1000 if self.latencies else float("nan")
        return (
            f"{self.rps:8.1f} req/s  p50 {self.pct(0.5):7.2f} ms  p99 {self.pct(0.99):7.2f} ms  "
            f"mean {mean:7.2f} ms  n={len(self.latencies)} errors={self.errors}"
        )


class Connection:
    """One keep-alive HTTP/1.1 connection sending pre-built requests."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> int:
        return (await self.response(raw))[0]

    async def response(self, raw: bytes) -> tuple[int, bytes]:
        """Send `raw`; (status, body)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(raw)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        chunked = False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            parts = []
            while (size := int((await self.reader.readline()).strip(), 16)) > 0:
                parts.append((await self.reader.readexactly(size + 2))[:-2])
            await self.reader.readline()
            return status, b"".join(parts)
        return status, await self.reader.readexactly(length)

    async def first_chunk(self, raw: bytes) -> tuple[int, float, float]:
        """Send a streaming request; (status, seconds to the first body chunk, seconds to the end)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        start = time.perf_counter()
        self.writer.write(raw)
        status = int((await self.reader.readline()).split()[1])
        chunked, length = False, 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name.lower() == b"content-length":
                length = int(value)
        first = 0.0
        if chunked:
            while (size := int((await self.reader.readline()).strip(), 16)) > 0:
                await self.reader.readexactly(size + 2)
                first = first or time.perf_counter() - start
            await self.reader.readline()
        else:
            await self.reader.readexactly(length)
            first = time.perf_counter() - start
        return status, first, time.perf_counter() - start

    def close(self) -> None:
        if self.writer:
            self.writer.close()


def build_request(
    url: str, method: str = "GET", headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}", "Connection: keep-alive"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def run_load(
    url: str, raw: bytes, *, concurrency: int, duration: float, warmup: float = 1.0, first_chunk: bool = False
) -> Result:
    """Send `raw` as fast as `concurrency` keep-alive connections allow, for `duration` seconds.

    With `first_chunk`, latencies are the time to the first body chunk of a streamed answer.
    """
    result = Result()
    stop_at = time.perf_counter() + warmup + duration
    measure_from = time.perf_counter() + warmup

    async def worker() -> None:
        conn = Connection(url)
        try:
            while (start := time.perf_counter()) < stop_at:
                latency = 0.0
                try:
                    if first_chunk:
                        status, latency, _ = await conn.first_chunk(raw)
                    else:
                        status = await conn.request(raw)
                        latency = time.perf_counter() - start
                except (OSError, ValueError, asyncio.IncompleteReadError):
                    conn.close()
                    conn = Connection(url)
                    status = 0
                if start >= measure_from:
                    if 200 <= status < 300:
                        result.latencies.append(latency)
                    else:
                        result.errors += 1
        finally:
            conn.close()

    await asyncio.gather(*[worker() for _ in range(concurrency)])
    result.elapsed = duration
    return result


@contextmanager
def hello_world(port: int) -> Iterator[str]:
    """A bare FastAPI hello-world on uvicorn (same server settings as the services), as a yardstick."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HELLO_APP + f"\nimport uvicorn\nuvicorn.run(app, port={port}, log_level='warning')",
        ],
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{url}/hello", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)
