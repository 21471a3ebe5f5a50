"""Benchmark of a started user-service (e.g. `make run`): logins, /health under login load, /users/me.

    python bench/user_service.py [--url http://127.0.0.1:8024] [--duration 10]

Reports login p50/p99 and logins/s at concurrency 16, /health p99 while those logins run (the
logins come from a separate process, so the load generator does not share the measuring process's
CPU; bcrypt must be off the event loop and bounded by PASSWORD_HASH_CONCURRENCY: target < 50 ms),
and GET /users/me requests/s at concurrency 32 next to a bare FastAPI hello-world measured in the
same run (target: at least 0.35 of it).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import uuid
from multiprocessing import Queue
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from urllib.parse import urlencode

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import Result, build_request, hello_world, run_load
from chat_common.embedded import free_port

PASSWORD = "Bench-pass-2024"


async def make_users(base: str, count: int) -> list[str]:
    names = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for _ in range(count):
            name = f"bench{uuid.uuid4().hex[:10]}"
            body = {
                "email": f"{name}@example.com",
                "username": name,
                "display_name": name,
                "password": PASSWORD,
            }
            response = await client.post("/api/v1/auth/register", json=body)
            response.raise_for_status()
            names.append(name)
    return names


async def login_load(base: str, names: list[str], duration: float) -> Result:
    """One connection per user, each logging in again and again for `duration` seconds."""
    result = Result()

    async def login_worker(name: str) -> None:
        raw = build_request(
            f"{base}/api/v1/auth/token",
            "POST",
            {"Content-Type": "application/x-www-form-urlencoded"},
            urlencode({"username": name, "password": PASSWORD}).encode(),
        )
        single = await run_load(base, raw, concurrency=1, duration=duration, warmup=0.5)
        result.latencies += single.latencies
        result.errors += single.errors

    await asyncio.gather(*[login_worker(name) for name in names])
    result.elapsed = duration
    return result


def login_load_process(
    base: str, names: list[str], duration: float, started: EventType, results: Queue[Result]
) -> None:
    """The login load, run in a process of its own so its CPU does not blur the /health figure."""

    async def run() -> Result:
        started.set()
        return await login_load(base, names, duration)

    results.put(asyncio.run(run()))


async def logins_with_health(base: str, names: list[str], duration: float) -> tuple[Result, Result]:
    """16 connections logging in (each its own user, from another process) while this one polls /health.

    The login process runs a second longer than the /health measurement, which starts once the
    logins have, so every /health request is measured under the full login load.
    """
    context = multiprocessing.get_context("spawn")
    started, results = context.Event(), context.Queue()
    process = context.Process(target=login_load_process, args=(base, names, duration + 1.0, started, results))
    process.start()
    try:
        if not await asyncio.to_thread(started.wait, 60):
            raise RuntimeError("the login load process did not start")
        health = await run_load(base, build_request(f"{base}/health"), concurrency=1, duration=duration)
        logins: Result = await asyncio.to_thread(results.get, True, duration + 60)
    finally:
        process.join(10)
        if process.is_alive():
            process.terminate()
    return logins, health


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="http://127.0.0.1:8024")
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    base = args.url.rstrip("/")

    names = await make_users(base, 16)
    logins, health = await logins_with_health(base, names, args.duration)
    print(f"login      c=16 (separate process)  {logins.summary()}")
    print(
        f"/health    c=1 during logins  {health.summary()}   target p99 < 50 ms: "
        f"{'MET' if health.pct(0.99) < 50 else 'MISSED'}"
    )
    print("(a shared 2-core machine is noisy: repeat the run before trusting one figure)")

    async with httpx.AsyncClient(base_url=base) as client:
        token = (
            await client.post("/api/v1/auth/token", data={"username": names[0], "password": PASSWORD})
        ).json()
    me_raw = build_request(
        f"{base}/api/v1/users/me", headers={"Authorization": f"Bearer {token['access_token']}"}
    )
    me = await run_load(base, me_raw, concurrency=32, duration=args.duration)
    with hello_world(free_port()) as hello_url:
        hello = await run_load(
            hello_url, build_request(f"{hello_url}/hello"), concurrency=32, duration=args.duration
        )
    ratio = me.rps / hello.rps if hello.rps else 0.0
    print(f"/users/me  c=32  {me.summary()}")
    print(f"hello      c=32  {hello.summary()}")
    print(f"/users/me vs hello-world: {ratio:.2f}   target >= 0.35: {'MET' if ratio >= 0.35 else 'MISSED'}")


if __name__ == "__main__":
    asyncio.run(main())
