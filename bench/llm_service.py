"""Benchmark of llm-service's overhead: the LM Studio stand-in at zero delay, direct vs through llm-service.

    python bench/llm_service.py [--duration 8]

Starts the stand-in and llm-service (MAX_CONCURRENCY=64, so the gate is not what is measured) on
free ports, then reports in one run: chat latency p50/p99 and requests/s, and streamed first-token
time, each direct to the stand-in and through llm-service, at concurrency 1 and 32.
Targets: added p50 latency at most 3 ms at concurrency 1; throughput through llm-service at least
0.6 of direct at concurrency 32.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loadgen import Result, build_request, run_load  # noqa: E402
from chat_common.embedded import free_port  # noqa: E402
from chat_common.testing import TokenMint, serve_app  # noqa: E402
from lmstudio_client.testing import run_standin  # noqa: E402

MODEL = "lmstudio-standin/echo-7b"


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError("llm-service did not start")


def body(stream: bool) -> bytes:
    return json.dumps(
        {
            "model": MODEL,
            "stream": stream,
            "messages": [{"role": "user", "content": "a short benchmark prompt"}],
        }
    ).encode()


async def measure(direct: str, through: str, token: str, duration: float) -> None:
    json_header = {"Content-Type": "application/json"}
    auth = {**json_header, "Authorization": f"Bearer {token}"}
    rows: dict[tuple[str, int, str], Result] = {}
    for concurrency in (1, 32):
        for stream in (False, True):
            kind = "stream first token" if stream else "chat"
            for name, url, headers in (
                ("direct", f"{direct}/v1/chat/completions", json_header),
                ("through", f"{through}/api/v1/chat/completions", auth),
            ):
                raw = build_request(url, "POST", headers, body(stream))
                result = await run_load(
                    url, raw, concurrency=concurrency, duration=duration, first_chunk=stream
                )
                rows[(kind, concurrency, name)] = result
                print(f"{kind:<19} c={concurrency:<3} {name:<8} {result.summary()}", flush=True)
    added = rows[("chat", 1, "through")].pct(0.5) - rows[("chat", 1, "direct")].pct(0.5)
    added_ft = rows[("stream first token", 1, "through")].pct(0.5) - rows[
        ("stream first token", 1, "direct")
    ].pct(0.5)
    ratio = rows[("chat", 32, "through")].rps / rows[("chat", 32, "direct")].rps
    ratio_stream = (
        rows[("stream first token", 32, "through")].rps / rows[("stream first token", 32, "direct")].rps
    )
    print(
        f"added p50 latency, chat, c=1: {added:.2f} ms   target <= 3 ms: {'MET' if added <= 3 else 'MISSED'}"
    )
    print(f"added p50 first-token time, stream, c=1: {added_ft:.2f} ms")
    verdict = "MET" if ratio >= 0.6 else "MISSED"
    print(f"throughput through/direct, chat, c=32: {ratio:.2f}   target >= 0.6: {verdict}")
    print(f"throughput through/direct, stream, c=32: {ratio_stream:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=8.0)
    args = parser.parse_args()
    mint = TokenMint()
    with run_standin() as standin, serve_app(mint.jwks_app()) as jwks:
        port = free_port()
        env = {
            **os.environ,
            "LMSTUDIO_BASE_URL": standin.url,
            "JWKS_URL": f"{jwks}/.well-known/jwks.json",
            "PORT": str(port),
            "MAX_CONCURRENCY": "64",
            "MAX_QUEUE": "64",
            "LOG_LEVEL": "WARNING",
        }
        service = subprocess.Popen(
            [sys.executable, "run.py"],
            cwd=ROOT / "llm-service",
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            through = f"http://127.0.0.1:{port}"
            wait_ready(through)
            # message-service's unmetered path (a user's token would also reserve credits at user-service)
            token = mint.service("message-service", ["llm:generate"])
            asyncio.run(measure(standin.url, through, token, args.duration))
        finally:
            service.terminate()
            service.wait(10)


if __name__ == "__main__":
    main()
