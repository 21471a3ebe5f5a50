"""Benchmark of user-service: logins, /health under login load, /users/me, and the CPU cost of a
credits reserve+commit pair.

    python bench/user_service.py [--duration 10] [--only credits]

Self-contained: starts its own embedded PostgreSQL and Redis and a user-service (bcrypt at its
default cost, login limits out of the way) in a temporary directory, never the development data of
`make run`.

Reports login p50/p99 and logins/s at concurrency 16, /health p99 while those logins run (the
logins come from a separate process, so the load generator does not share the measuring process's
CPU; bcrypt must be off the event loop and bounded by PASSWORD_HASH_CONCURRENCY: target < 50 ms),
and GET /users/me requests/s at concurrency 32 next to a bare FastAPI hello-world measured in the
same run (no longer a target).

Credits: the CPU time (utime + stime from /proc/<pid>/stat) that user-service and its PostgreSQL
backends spend per reserve+commit pair and per GET /users/me, both at concurrency 16 in the same run
(target: a pair costs at most 3x a /users/me). Read from /proc, so the load generator's own CPU does not
count; run it on the machine that runs the service and its PostgreSQL (as the user running them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from multiprocessing import Queue
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import Result, build_request, hello_world, run_load
from bench.state import own_fleet
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


# --- credits: CPU per reserve+commit pair against CPU per GET /users/me ---

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _tcp_sockets() -> dict[int, tuple[int, str]]:
    """Socket inode -> (local port, state) of every TCP socket on the host."""
    sockets = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                sockets[int(fields[9])] = (int(fields[1].rsplit(":", 1)[1], 16), fields[3])
    return sockets


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):  # gone, or not ours to read
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def listening_pid(port: int) -> int:
    """The process listening on TCP `port` (the service under test)."""
    listening = {inode for inode, (local, state) in _tcp_sockets().items() if local == port and state == "0A"}
    for pid in _pids():
        if _socket_inodes(pid) & listening:
            return pid
    raise SystemExit(f"no process of this user listens on port {port}: run the bench where the service runs")


def postgres_backends(service_pid: int) -> set[int]:
    """PostgreSQL backends connected to the service: their title names the client port, e.g.
    `postgres: postgres users 127.0.0.1(51234) idle`, which is one of the service's local ports."""
    sockets = _tcp_sockets()
    client_ports = {
        sockets[i][0] for i in _socket_inodes(service_pid) if i in sockets and sockets[i][1] == "01"
    }
    backends = set()
    for pid in _pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as file:
                title = file.read()
        except OSError:
            continue
        match = re.search(rb"\((\d+)\)", title) if title.startswith(b"postgres: ") else None
        if match and int(match[1]) in client_ports:
            backends.add(pid)
    return backends


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            fields = file.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def measure_cpu(service_pid: int, load: Callable[[], Awaitable[int]]) -> tuple[float, float, int, int]:
    """Run `load` (returns how many operations it completed);
    (service CPU s, PostgreSQL CPU s, ops, how many PostgreSQL backends served the service)."""
    backends = postgres_backends(service_pid)
    before = {pid: cpu_seconds(pid) for pid in backends | {service_pid}}
    operations = await load()
    backends |= postgres_backends(service_pid)  # a backend opened during the run started from 0
    service = cpu_seconds(service_pid) - before[service_pid]
    postgres = sum(cpu_seconds(pid) - before.get(pid, 0.0) for pid in backends)
    return service, postgres, operations, len(backends)


async def _credit_users(base: str, count: int) -> list[tuple[str, str]]:
    """(user id, access token) of fresh users, each with the signup credits."""
    users = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for name in await make_users(base, count):
            token = (
                await client.post("/api/v1/auth/token", data={"username": name, "password": PASSWORD})
            ).json()["access_token"]
            me = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
            users.append((me.json()["id"], token))
    return users


async def _timed_workers(
    base: str, concurrency: int, duration: float, step: Callable[[httpx.AsyncClient, int], Awaitable[bool]]
) -> tuple[int, int]:
    """`concurrency` keep-alive clients calling `step(client, worker)` for `duration` s; (ok, failed)."""
    counts = [0, 0]
    stop_at = time.perf_counter() + duration

    async def worker(index: int) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            while time.perf_counter() < stop_at:
                counts[0 if await step(client, index) else 1] += 1

    await asyncio.gather(*[worker(i) for i in range(concurrency)])
    return counts[0], counts[1]


async def credits_cpu(
    base: str, duration: float, client_id: str, client_secret: str, concurrency: int = 16
) -> None:
    service_pid = listening_pid(urlsplit(base).port or 80)
    users = await _credit_users(base, concurrency)
    async with httpx.AsyncClient(base_url=base) as client:
        response = await client.post(
            "/api/v1/auth/service-token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": client_secret,
                "scope": "credits:write",
            },
        )
        response.raise_for_status()
    service = {"Authorization": f"Bearer {response.json()['access_token']}"}

    async def me(client: httpx.AsyncClient, worker: int) -> bool:
        token = users[worker][1]
        response = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        return response.status_code == 200

    async def pair(client: httpx.AsyncClient, worker: int) -> bool:
        """Reserve 5 and commit 0: the same writes as any partial commit (status, refund, its ledger
        row), and the users never run out of credits however long the run."""
        user_id = users[worker][0]
        body = {"user_id": user_id, "amount": 5, "idempotency_key": uuid.uuid4().hex, "reference": "bench"}
        reserved = await client.post("/api/v1/credits/reservations", json=body, headers=service)
        if reserved.status_code != 201:
            return False
        url = f"/api/v1/credits/reservations/{reserved.json()['id']}/commit"
        committed = await client.post(url, json={"amount": 0}, headers=service)
        return committed.status_code == 200

    # The two loads alternate in short rounds, so a neighbour's burst on a shared machine hits both alike.
    steps = {"GET /users/me": me, "reserve+commit": pair}
    totals = {name: [0.0, 0.0, 0, 0, 0] for name in steps}  # service s, PostgreSQL s, ok, failed, backends
    for step in steps.values():
        await _timed_workers(base, concurrency, 1.0, step)  # warm-up: every pool connection open
    rounds = 4
    for _ in range(rounds):
        for name, step in steps.items():
            failed = 0

            async def load(step: Callable[[httpx.AsyncClient, int], Awaitable[bool]] = step) -> int:
                nonlocal failed
                ok, failed = await _timed_workers(base, concurrency, duration / rounds, step)
                return ok

            service_s, postgres_s, ops, backends = await measure_cpu(service_pid, load)
            total = totals[name]
            total[0] += service_s
            total[1] += postgres_s
            total[2] += ops
            total[3] += failed
            total[4] = max(total[4], backends)
    results = {}
    for name, (service_total, postgres_total, done, failures, most_backends) in totals.items():
        results[name] = (service_total + postgres_total) / done * 1000 if done else float("nan")
        print(
            f"{name:<15} c={concurrency}  {done / duration:7.1f} ops/s  CPU per op: service "
            f"{service_total / done * 1000:6.2f} ms + PostgreSQL {postgres_total / done * 1000:5.2f} ms = "
            f"{results[name]:6.2f} ms  (n={done:.0f} failed={failures:.0f}, {most_backends:.0f} backends)"
        )
    ratio = results["reserve+commit"] / results["GET /users/me"]
    print(
        f"reserve+commit vs /users/me CPU: {ratio:.2f}x   target <= 3x: {'MET' if ratio <= 3 else 'MISSED'}"
    )


async def run(base: str, args: argparse.Namespace) -> None:
    if args.only == "credits":
        await credits_cpu(base, args.duration, args.client_id, args.client_secret)
        return

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
    print(f"/users/me vs hello-world: {ratio:.2f}   (for reference; no longer a target)")
    await credits_cpu(base, args.duration, args.client_id, args.client_secret)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--only", choices=["credits"], help="run only this part")
    parser.add_argument("--client-id", default="message-service", help="service client with credits:write")
    parser.add_argument("--client-secret", default="dev-message-service-secret")
    args = parser.parse_args()
    # bcrypt at user-service's default cost: logins cost what they cost in a deployment.
    with own_fleet("bench-users-", BCRYPT_ROUNDS="12") as fleet:
        asyncio.run(run(fleet.users.url, args))


if __name__ == "__main__":
    main()
