"""Benchmark of character-service: get-by-id and search vs hello-world.

    python bench/character_service.py [--duration 10] [--characters 10000]

Self-contained: starts its own embedded PostgreSQL and Redis, user-service and character-service in a
temporary directory (never the development data of `make run`), signs up a bench user, creates
10,000 public characters tagged `bench-seed` through the API, then reports at concurrency 32: GET
/characters/{id} requests/s and a search query's requests/s, next to a bare FastAPI hello-world
measured in the same run. Targets: at least 0.35 of hello-world for the get, 0.2 for the search.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import build_request, hello_world, run_load
from bench.state import own_fleet
from chat_common.embedded import free_port

SEED_TAG = "bench-seed"
TOTAL = 10_000
WORDS = ["dragon", "knight", "pirate", "wizard", "detective", "robot", "vampire", "captain", "healer", "bard"]


async def bench_token(user_url: str) -> str:
    name = f"bench{uuid.uuid4().hex[:10]}"
    password = "Bench-pass-2024"
    async with httpx.AsyncClient(base_url=user_url, timeout=60) as client:
        body = {"email": f"{name}@example.com", "username": name, "display_name": name, "password": password}
        (await client.post("/api/v1/auth/register", json=body)).raise_for_status()
        token = await client.post("/api/v1/auth/token", data={"username": name, "password": password})
        token.raise_for_status()
        return str(token.json()["access_token"])


async def seed(base: str, headers: dict[str, str], total: int) -> str:
    """Top up the catalogue to `total` seeded characters; returns one character id."""
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        have = (await client.get("/api/v1/characters", params={"tags": SEED_TAG, "limit": 1})).json()
        missing = total - have["total"]
        rng = random.Random(7)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(max(missing, 0)):
            queue.put_nowait(i)

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                a, b = rng.choice(WORDS), rng.choice(WORDS)
                body = {
                    "name": f"{a.title()} {i}",
                    "description": f"A {b} who travels with a {a}.",
                    "tags": [SEED_TAG, a, b],
                    "visibility": "public",
                }
                (await client.post("/api/v1/characters", json=body)).raise_for_status()

        if missing > 0:
            print(f"seeding {missing} characters ...", flush=True)
            await asyncio.gather(*[worker() for _ in range(16)])
        first = (await client.get("/api/v1/characters", params={"tags": SEED_TAG, "limit": 1})).json()
        return str(first["items"][0]["id"])


async def measure(base: str, user_url: str, duration: float, total: int) -> None:
    headers = {"Authorization": f"Bearer {await bench_token(user_url)}"}
    started = time.perf_counter()
    character_id = await seed(base, headers, total)
    print(f"{total} characters seeded in {time.perf_counter() - started:.0f} s", flush=True)

    get_url = f"{base}/api/v1/characters/{character_id}"
    get = await run_load(base, build_request(get_url, headers=headers), concurrency=32, duration=duration)
    search_url = f"{base}/api/v1/characters?q=dragon%20kni&limit=20"
    search = await run_load(
        base, build_request(search_url, headers=headers), concurrency=32, duration=duration
    )
    with hello_world(free_port()) as hello_url:
        hello = await run_load(
            hello_url, build_request(f"{hello_url}/hello"), concurrency=32, duration=duration
        )
    get_ratio, search_ratio = get.rps / hello.rps, search.rps / hello.rps
    print(f"GET /characters/{{id}} c=32  {get.summary()}")
    print(f"search q='dragon kni' c=32 {search.summary()}")
    print(f"hello-world c=32           {hello.summary()}")
    for label, ratio, target in (("get", get_ratio, 0.35), ("search", search_ratio, 0.2)):
        verdict = "MET" if ratio >= target else "MISSED"
        print(f"{label} vs hello-world: {ratio:.2f}   target >= {target}: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--characters", type=int, default=TOTAL, help="how many characters to seed")
    args = parser.parse_args()
    with own_fleet("bench-characters-", characters=True) as fleet:
        assert fleet.characters is not None
        asyncio.run(measure(fleet.characters.url, fleet.users.url, args.duration, args.characters))


if __name__ == "__main__":
    main()
