"""Benchmark of message-service on the real fleet: a streamed reply's first token, through message-service
vs directly at the LM Studio stand-in (zero delay), and complete exchanges per second.

    python bench/message_service.py [--duration 10] [--turns 8] [--profile]

Starts embedded PostgreSQL, Redis (one for user-service, one for message-service alone, so its INFO
commandstats are message-service's own) and nx-27017, real user-, character-, conversation- and
llm-service processes, the stand-in at zero delay and message-service itself (`python run.py`) on free
ports; registers 16 users (plenty of credits), one public character and a pool of conversations per
client (each read once, so its greeting exists and message-service has it cached, as it has a
conversation its user has open), then reports in one run, at concurrency 1 and 16:

- first-token time (p50/p99) from sending the request to the first reply text, three ways:
  directly at the stand-in's /v1/chat/completions (streaming, the exact body message-service sends it),
  at llm-service's /api/v1/chat/completions (the same body, message-service's service token), and
  through message-service: POST /api/v1/conversations/{id}/messages with stream:true to the first
  `delta` SSE event;
- complete exchanges per second through message-service (the streamed reply to `message.completed`);
- the same c=1 load paced (0.2 s between exchanges, so the previous reply's follow-ups are done): what
  a lone user waits for, next to the back-to-back c=1 load the target is judged on;
- where the time goes, per exchange: the replies' stored `generation.first_token_ms` (job start to the
  first piece from llm-service) and `latency_ms`; llm-service's own `timing` (from its usage chunk, in
  the llm-service load); the request's stages inside message-service (wall time of access, limit, tree,
  prompt, reserve, store, publish, finish; awaited, so they include waiting for the event loop);
  MongoDB commands (PyMongo CommandListener) and Redis commands (client-side wall time per command, and
  Redis's own usec from INFO commandstats); CPU ms per exchange of every process (/proc); and the
  mean first token split into the stages before the job, the job's wait for llm-service, and the rest.

Each client uses its own conversations (the per-conversation lock allows one generation at a time), in
turn, so a conversation's history grows by at most about --turns exchanges in the run.
The stages, MongoDB and Redis figures come from a bench-only `sitecustomize` on message-service's
PYTHONPATH (no app code changes): it wraps the named functions and registers the listeners, and writes
its totals on SIGUSR1; with --profile, SIGUSR2 starts and then stops a cProfile of one extra c=16 load,
whose top functions are printed.
Targets: added first-token p50 at most 30 ms at concurrency 1 (through message-service vs direct);
at least 60 exchanges/s at concurrency 16 with all services on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pstats
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from redis import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fleet import Fleet, fleet  # noqa: E402
from bench.loadgen import Connection, Result, build_request  # noqa: E402
from bench.user_service import cpu_seconds, postgres_backends  # noqa: E402
from chat_common.mongo import MongoSettings, mongo_client  # noqa: E402
from chat_common.testing import ServiceProcess  # noqa: E402
from chat_common.testing.fleet import FleetUser, register_user  # noqa: E402
from lmstudio_client.testing import StandinProcess  # noqa: E402

CLIENTS = 16
PAUSE = 0.2  # seconds between exchanges in the paced c=1 load: the previous reply's follow-ups are done
# The request's stages before its generation job starts (the hook's labels).
BEFORE_JOB = (
    "access.conversation",
    "sending.check_message_limit",
    "sending.send (all of it)",
)
MESSAGE = "Tell me about the sky harbour and the ships that dock there tonight."

# Loaded by message-service only (PYTHONPATH), before run.py. Sums, per name: MongoDB commands
# (CommandListener), Redis commands as the client awaits them (execute_command, pipelines), and the
# wall time of the request's stages (the wrapped coroutine functions below). Totals are written to
# BENCH_TOTALS on SIGUSR1; SIGUSR2 starts a cProfile, the next SIGUSR2 writes it to BENCH_PROFILE.
SITECUSTOMIZE = """
import cProfile, functools, json, os, signal, sys, time
from pymongo import monitoring
from redis.asyncio.client import Pipeline, Redis

TOTALS = {"mongodb": {}, "redis": {}, "stage": {}}

def _add(kind, name, seconds):
    entry = TOTALS[kind].setdefault(name, [0, 0.0])
    entry[0] += 1
    entry[1] += seconds

class _Commands(monitoring.CommandListener):
    def started(self, event):
        pass
    def succeeded(self, event):
        _add("mongodb", event.command_name, event.duration_micros / 1e6)
    failed = succeeded

monitoring.register(_Commands())

def _timed(kind, name, function):
    @functools.wraps(function)
    async def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return await function(*args, **kwargs)
        finally:
            _add(kind, name(args) if callable(name) else name, time.perf_counter() - start)
    return wrapper

Redis.execute_command = _timed("redis", lambda args: str(args[1]).upper(), Redis.execute_command)
Pipeline.execute = _timed("redis", "(pipeline)", Pipeline.execute)

sys.path.insert(0, os.getcwd())
from app.services import access, bookkeeping, followups, generation, history, prompting, sending
from app.repositories.live import Live
from chat_common.credits import CreditsClient

STAGES = [
    (access, "conversation", "access.conversation"),
    (sending, "check_message_limit", "sending.check_message_limit"),
    (sending, "send", "sending.send (all of it)"),
    (history, "active_path", "  history.active_path (the tree, under the lock)"),
    (access, "character", "  access.character"),
    (prompting, "payload", "  prompting.payload"),
    (CreditsClient, "reserve", "  credits.reserve (user-service)"),
    (sending, "_store", "  sending._store (MongoDB)"),
    (Live, "publish", "live.publish (every event)"),
    (generation, "_finish", "generation._finish (after the last piece)"),
    (bookkeeping, "settle", "  bookkeeping.settle (credits commit)"),
    (followups, "tell", "followups.tell (one batch of follow-ups)"),
]
for owner, attribute, label in STAGES:
    setattr(owner, attribute, _timed("stage", label, getattr(owner, attribute)))

def _write(signum, frame):
    path = os.environ["BENCH_TOTALS"]
    with open(path + ".tmp", "w") as file:
        json.dump(TOTALS, file)
    os.replace(path + ".tmp", path)

_profile = []

def _toggle(signum, frame):
    if not _profile:
        _profile.append(cProfile.Profile())
        _profile[0].enable()
    else:
        _profile[0].disable()
        path = os.environ["BENCH_PROFILE"]
        _profile.pop().dump_stats(path + ".tmp")
        os.replace(path + ".tmp", path)

signal.signal(signal.SIGUSR1, _write)
signal.signal(signal.SIGUSR2, _toggle)
"""


# The client side: one keep-alive connection per worker, a streamed request read to its end.


async def streamed(
    conn: Connection, raw: bytes, first_marker: bytes, end_marker: bytes
) -> tuple[float, float]:
    """Send a streaming request; (seconds to the first chunk holding `first_marker`, seconds to the end).
    Raises ValueError unless the status is 2xx and `end_marker` arrived."""
    if conn.writer is None:
        conn.reader, conn.writer = await asyncio.open_connection(conn.host, conn.port)
    assert conn.reader is not None
    start = time.perf_counter()
    conn.writer.write(raw)
    status = int((await conn.reader.readline()).split()[1])
    chunked, length = False, 0
    while (line := await conn.reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name.lower() == b"content-length":
            length = int(value)
    first, seen = 0.0, b""
    if not chunked:
        await conn.reader.readexactly(length)
        raise ValueError(f"status {status}, not a stream")
    while (size := int((await conn.reader.readline()).strip(), 16)) > 0:
        chunk = await conn.reader.readexactly(size + 2)
        if not first and first_marker in chunk:
            first = time.perf_counter() - start
        if end_marker in chunk:
            seen = end_marker
    await conn.reader.readline()
    if not 200 <= status < 300 or not first or not seen:
        raise ValueError(f"status {status}, first token {bool(first)}, end {bool(seen)}")
    return first, time.perf_counter() - start


@dataclass
class Exchanges:
    """First-token latencies (`result`) and whole exchanges (`whole`) of one load."""

    result: Result = field(default_factory=Result)
    whole: Result = field(default_factory=Result)


Requests = Callable[[int], Iterator[tuple[str, bytes]]]  # worker index -> (url, raw request), endlessly


async def stream_load(
    requests: Requests,
    first_marker: bytes,
    end_marker: bytes,
    *,
    concurrency: int,
    duration: float,
    pause: float = 0.0,
) -> Exchanges:
    """Each worker sends its requests one after the other (`pause` seconds apart) for `duration`."""
    out = Exchanges()
    stop_at = time.perf_counter() + duration

    async def worker(index: int) -> None:
        source = requests(index)
        url, raw = next(source)
        conn = Connection(url)
        try:
            while time.perf_counter() < stop_at:
                try:
                    first, total = await streamed(conn, raw, first_marker, end_marker)
                    out.result.latencies.append(first)
                    out.whole.latencies.append(total)
                except (OSError, ValueError, asyncio.IncompleteReadError):
                    conn.close()
                    conn = Connection(url)
                    out.result.errors += 1
                    out.whole.errors += 1
                url, raw = next(source)
                if pause:
                    await asyncio.sleep(pause)
        finally:
            conn.close()

    await asyncio.gather(*[worker(i) for i in range(concurrency)])
    out.result.elapsed = out.whole.elapsed = duration
    return out


# The fleet.


@dataclass
class Bench:
    standin: StandinProcess
    llm: ServiceProcess
    service: ServiceProcess
    redis_url: str
    mongodb_url: str
    database: str
    totals_path: Path
    profile_path: Path
    pids: dict[str, Callable[[], set[int]]]
    users: list[FleetUser] = field(default_factory=list)
    pools: list[list[str]] = field(default_factory=list)  # each client's conversations
    turns: list[int] = field(default_factory=lambda: [0] * CLIENTS)  # each client's exchanges so far
    body: dict[str, Any] = field(default_factory=dict)  # what message-service sends the stand-in
    service_token: str = ""


def hook_env(data_dir: Path) -> dict[str, str]:
    """message-service's settings that load the bench's `sitecustomize` (written to `data_dir`)."""
    hook_dir = data_dir / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return {
        "PYTHONPATH": str(hook_dir),
        "BENCH_TOTALS": str(data_dir / "totals.json"),
        "BENCH_PROFILE": str(data_dir / "profile.out"),
    }


def wait_for_file(path: Path, timeout: float = 20.0) -> None:
    """Wait until message-service has written `path` (after a signal)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"message-service did not write {path.name}")
        time.sleep(0.02)


def read_totals(bench: Bench) -> dict[str, dict[str, list[float]]]:
    """message-service's totals (SIGUSR1): kind -> name -> [count, seconds]."""
    bench.totals_path.unlink(missing_ok=True)
    os.kill(bench.service.process.pid, signal.SIGUSR1)
    wait_for_file(bench.totals_path)
    found: dict[str, dict[str, list[float]]] = json.loads(bench.totals_path.read_text())
    return found


def redis_commandstats(url: str) -> dict[str, tuple[int, float]]:
    """Redis's own count and seconds per command (INFO commandstats)."""
    with Redis.from_url(url) as client:
        info = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): (int(v["calls"]), v["usec"] / 1e6) for name, v in info.items()}


async def seed(
    bench: Bench, users_url: str, characters_url: str, conversations_url: str, per_client: list[int]
) -> None:
    """Users, a public character, each client's conversations (read once: greetings created), one
    exchange to learn the stand-in's request body, and message-service's service token."""
    bench.users = [register_user(users_url, f"bench{i}") for i in range(CLIENTS)]
    owner = bench.users[0]
    async with httpx.AsyncClient(timeout=60) as client:
        character = await client.post(
            f"{characters_url}/api/v1/characters",
            json={
                "name": "Mira",
                "description": "{{char}} is a sky captain who talks to {{user}}.",
                "greeting": "Welcome aboard, {{user}}!",
                "visibility": "public",
            },
            headers=owner.headers,
        )
        character.raise_for_status()
        character_id = character.json()["id"]

        async def pool(user: FleetUser, size: int) -> list[str]:
            ids = []
            for _ in range(size):
                created = await client.post(
                    f"{conversations_url}/api/v1/conversations",
                    json={"character_id": character_id},
                    headers=user.headers,
                )
                created.raise_for_status()
                ids.append(created.json()["id"])
                listed = await client.get(
                    f"{bench.service.url}/api/v1/conversations/{ids[-1]}/messages", headers=user.headers
                )
                listed.raise_for_status()
            return ids

        pairs = zip(bench.users, per_client, strict=True)
        bench.pools = list(await asyncio.gather(*[pool(user, size) for user, size in pairs]))
        sent = await client.post(
            f"{bench.service.url}/api/v1/conversations/{bench.pools[0][0]}/messages",
            json={"content": MESSAGE},
            headers=owner.headers,
        )
        sent.raise_for_status()
        token = await client.post(
            f"{users_url}/api/v1/auth/service-token",
            data={
                "grant_type": "client_credentials",
                "client_id": "message-service",
                "client_secret": "dev-message-service-secret",
                "scope": "llm:generate",
            },
        )
        token.raise_for_status()
        bench.service_token = token.json()["access_token"]
    chats = [r for r in bench.standin.requests() if r["path"].endswith("/chat/completions")]
    bench.body = {**chats[-1]["body"], "stream": True}


def direct_requests(bench: Bench) -> Requests:
    url = f"{bench.standin.url}/v1/chat/completions"
    raw = build_request(url, "POST", {"Content-Type": "application/json"}, json.dumps(bench.body).encode())

    def source(index: int) -> Iterator[tuple[str, bytes]]:
        while True:
            yield url, raw

    return source


def llm_requests(bench: Bench) -> Requests:
    url = f"{bench.llm.url}/api/v1/chat/completions"
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {bench.service_token}"}
    raw = build_request(url, "POST", headers, json.dumps(bench.body).encode())

    def source(index: int) -> Iterator[tuple[str, bytes]]:
        while True:
            yield url, raw

    return source


def message_requests(bench: Bench) -> Requests:
    """Each client's conversations in turn, carrying on from the previous load where it stopped."""
    body = json.dumps({"content": MESSAGE, "stream": True}).encode()

    def source(index: int) -> Iterator[tuple[str, bytes]]:
        user, pool = bench.users[index], bench.pools[index]
        headers = {**user.headers, "Content-Type": "application/json"}
        while True:
            turn = bench.turns[index] = bench.turns[index] + 1
            url = f"{bench.service.url}/api/v1/conversations/{pool[turn % len(pool)]}/messages"
            yield url, build_request(url, "POST", headers, body)

    return source


@dataclass
class Load:
    label: str
    run: Callable[[float], Awaitable[Exchanges]]
    through: bool = False  # through message-service: its totals and stored generations are reported
    out: Exchanges = field(default_factory=Exchanges)
    cpu: dict[str, float] = field(default_factory=dict)
    totals: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    redis: dict[str, list[float]] = field(default_factory=dict)
    stored: dict[str, list[float]] = field(default_factory=dict)


def _diff(after: dict[str, list[float]], before: dict[str, list[float]]) -> dict[str, list[float]]:
    found = {}
    for name, (count, spent) in after.items():
        was = before.get(name, [0, 0.0])
        if count - was[0]:
            found[name] = [count - was[0], spent - was[1]]
    return found


async def stored_generations(bench: Bench, since_ms: int) -> dict[str, list[float]]:
    """The replies stored since `since_ms`: their generation's first_token_ms and latency_ms."""
    client = mongo_client(MongoSettings(mongodb_url=bench.mongodb_url, service_name="bench"))
    try:
        rows = await (
            client[bench.database]["messages"]
            .find({"role": "assistant", "created_at": {"$gte": since_ms}}, {"generation": 1, "status": 1})
            .to_list()
        )
    finally:
        await client.close()
    found: dict[str, list[float]] = {"first_token_ms": [], "latency_ms": []}
    for row in rows:
        generation = row.get("generation") or {}
        if row.get("status") == "completed":
            for key in found:
                if isinstance(generation.get(key), int | float):
                    found[key].append(float(generation[key]))
    return found


async def measure(bench: Bench, load: Load, seconds: float) -> None:
    before_cpu = {name: {pid: cpu_seconds(pid) for pid in pids()} for name, pids in bench.pids.items()}
    before = await asyncio.to_thread(read_totals, bench) if load.through else {}
    before_redis = await asyncio.to_thread(redis_commandstats, bench.redis_url)
    since_ms = int(time.time() * 1000)
    load.out = await load.run(seconds)
    await asyncio.sleep(1.0)  # the last replies' follow-ups finish, and count
    for name, pids in bench.pids.items():
        was = before_cpu[name]
        load.cpu[name] = sum(cpu_seconds(pid) - was.get(pid, 0.0) for pid in pids() | set(was))
    after_redis = await asyncio.to_thread(redis_commandstats, bench.redis_url)
    load.redis = _diff(
        {k: list(v) for k, v in after_redis.items()}, {k: list(v) for k, v in before_redis.items()}
    )
    load.redis.pop("info", None)
    if load.through:
        after = await asyncio.to_thread(read_totals, bench)
        load.totals = {kind: _diff(after[kind], before.get(kind, {})) for kind in after}
        load.stored = await stored_generations(bench, since_ms)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(load: Load) -> None:
    done = max(len(load.out.whole.latencies), 1)
    first, whole = load.out.result, load.out.whole
    print(f"{load.label:<30} first token  {first.summary()}")
    print(f"{'':<30} whole stream {whole.summary().replace('req/s', 'exch/s')}")
    print("  CPU ms/exchange: " + ", ".join(f"{n} {s * 1000 / done:.2f}" for n, s in load.cpu.items() if s))
    if load.stored.get("first_token_ms"):
        ft, lat = load.stored["first_token_ms"], load.stored["latency_ms"]
        print(
            f"  stored generation (job start -> ...): first_token_ms p50 {pct(ft, 0.5):.0f} p99 "
            f"{pct(ft, 0.99):.0f}; latency_ms p50 {pct(lat, 0.5):.0f} p99 {pct(lat, 0.99):.0f} (n={len(ft)})"
        )
    for kind, title in (("stage", "stages"), ("mongodb", "MongoDB commands"), ("redis", "Redis commands")):
        entries = load.totals.get(kind) or {}
        if not entries:
            continue
        parts = [
            f"{name} {count / done:.2f}x {spent * 1000 / count:.2f} ms"
            for name, (count, spent) in sorted(entries.items(), key=lambda e: -e[1][1])
        ]
        if kind == "stage":
            print(f"  {title} per exchange (calls x mean wall ms):")
            for part in parts:
                print(f"    {part}")
        else:
            count = sum(c for c, _ in entries.values())
            total = sum(s for _, s in entries.values())
            print(
                f"  {title} per exchange: {count / done:.1f} taking {total * 1000 / done:.2f} ms awaited "
                f"(client side, incl. queueing): {'; '.join(parts)}"
            )
    if load.redis:
        calls = sum(c for c, _ in load.redis.values())
        usec = sum(s for _, s in load.redis.values())
        top = sorted(load.redis.items(), key=lambda e: -e[1][1])[:8]
        print(
            f"  Redis server side per exchange: {calls / done:.1f} commands, {usec * 1e6 / done:.0f} us: "
            + "; ".join(f"{n} {c / done:.2f}x {s * 1e6 / c:.1f} us" for n, (c, s) in top)
        )
    print(flush=True)


def decomposition(through: Load, llm: Load) -> str:
    """The mean first token through message-service as: its stages before the job starts, the job's
    wait for llm-service's first piece (next to llm-service's first token measured from a client), and
    the rest (auth, routing, the SSE response, XADD -> XREAD -> SSE event)."""
    done = max(len(through.out.whole.latencies), 1)
    stages = through.totals.get("stage", {})
    before = sum(stages.get(label, [0, 0.0])[1] for label in BEFORE_JOB) * 1000 / done
    stored = through.stored.get("first_token_ms") or [float("nan")]
    job = statistics.fmean(stored)
    first = statistics.fmean(through.out.result.latencies or [float("nan")]) * 1000
    direct = statistics.fmean(llm.out.result.latencies or [float("nan")]) * 1000
    return (
        f"first token {first:6.1f} ms = before the job {before:6.1f} + job start -> first piece {job:6.1f} "
        f"(llm-service from a client: {direct:5.1f}) + the rest {first - before - job:6.1f}"
    )


def per_client_pool(args: argparse.Namespace) -> list[int]:
    """Conversations per client, so that each gets about --turns exchanges at the expected rates
    (c=1 at 30/s and paced at 5/s on client 0, c=16 at 80/s; warm-ups of 1 s), plus one spare."""
    c16 = int(80 * (args.duration + 1) * (2 if args.profile else 1) / CLIENTS / args.turns) + 1
    return [c16 + int(35 * (args.duration + 1) / args.turns)] + [c16] * (CLIENTS - 1)


async def run(bench: Bench, args: argparse.Namespace, data_dir: Path) -> None:
    pools = per_client_pool(args)
    start = time.perf_counter()
    await seed(bench, *args.urls, pools)
    print(
        f"seeded {CLIENTS} users and {sum(pools)} conversations in {time.perf_counter() - start:.1f} s; "
        f"the stand-in's prompt: {len(bench.body['messages'])} messages, "
        f"{sum(len(str(m.get('content'))) for m in bench.body['messages'])} characters",
        flush=True,
    )
    delta, content = b"event: delta", b'"content"'
    completed, done = b"event: message.completed", b"[DONE]"

    def load(
        requests: Requests, first: bytes, end: bytes, concurrency: int, pause: float = 0.0
    ) -> Callable[[float], Awaitable[Exchanges]]:
        return lambda seconds: stream_load(
            requests, first, end, concurrency=concurrency, duration=seconds, pause=pause
        )

    loads = [
        Load("direct stand-in c=1", load(direct_requests(bench), content, done, 1)),
        Load("llm-service c=1", load(llm_requests(bench), content, done, 1)),
        Load("message-service c=1", load(message_requests(bench), delta, completed, 1), True),
        Load(
            "message-service c=1 paced",
            load(message_requests(bench), delta, completed, 1, PAUSE),
            True,
        ),
        Load("direct stand-in c=16", load(direct_requests(bench), content, done, CLIENTS)),
        Load("llm-service c=16", load(llm_requests(bench), content, done, CLIENTS)),
        Load("message-service c=16", load(message_requests(bench), delta, completed, CLIENTS), True),
    ]
    for measured in loads:  # warm-up (connections, caches, the JIT-less interpreter's first paths)
        await measured.run(1.0)
    for measured in loads:
        await measure(bench, measured, args.duration)
        report(measured)
    by = {m.label: m for m in loads}
    print("Where a first token's time goes (means, per exchange):")
    for through, llm in (("c=1", "c=1"), ("c=1 paced", "c=1"), ("c=16", "c=16")):
        print(f"  {through:<16} {decomposition(by[f'message-service {through}'], by[f'llm-service {llm}'])}")
    added = by["message-service c=1"].out.result.pct(0.5) - by["direct stand-in c=1"].out.result.pct(0.5)
    hop = by["llm-service c=1"].out.result.pct(0.5) - by["direct stand-in c=1"].out.result.pct(0.5)
    rate = by["message-service c=16"].out.whole.rps
    added16 = by["message-service c=16"].out.result.pct(0.5) - by["direct stand-in c=16"].out.result.pct(0.5)
    print(f"added p50 first-token time through llm-service alone, c=1: {hop:.2f} ms")
    print(
        f"added p50 first-token time through message-service, c=1: {added:.2f} ms   "
        f"target <= 30 ms: {'MET' if added <= 30 else 'MISSED'}"
    )
    print(f"added p50 first-token time through message-service, c=16: {added16:.2f} ms")
    print(
        f"complete exchanges/s through message-service, c=16: {rate:.1f}   "
        f"target >= 60: {'MET' if rate >= 60 else 'MISSED'}"
    )
    failed = sum(m.out.result.errors for m in loads)
    if failed:
        lines = [line for line in bench.service.log_tail(20_000).splitlines() if line.strip()]
        print(f"{failed} exchanges failed; message-service's last log lines:", *lines[-6:], sep="\n  ")
    if args.profile:
        await profile(bench, args.duration)


async def profile(bench: Bench, seconds: float) -> None:
    """cProfile of message-service during one more c=16 load: the top functions by own time and by
    cumulative time (the profiler slows the service: read the shares, not the rates)."""
    os.kill(bench.service.process.pid, signal.SIGUSR2)
    out = await stream_load(
        message_requests(bench),
        b"event: delta",
        b"event: message.completed",
        concurrency=CLIENTS,
        duration=seconds,
    )
    bench.profile_path.unlink(missing_ok=True)
    os.kill(bench.service.process.pid, signal.SIGUSR2)
    await asyncio.to_thread(wait_for_file, bench.profile_path)
    print(f"\nprofiled c=16 load: {out.whole.summary().replace('req/s', 'exch/s')}")
    stats = pstats.Stats(str(bench.profile_path))
    done = max(len(out.whole.latencies), 1)
    by_package: dict[str, float] = {}
    for (filename, _, _), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        package = package_of(filename)
        by_package[package] = by_package.get(package, 0.0) + own
    total = sum(by_package.values())
    print("own time by package (profiled ms per exchange, share):")
    for package, own in sorted(by_package.items(), key=lambda e: -e[1])[:16]:
        print(f"  {package:<28} {own * 1000 / done:7.2f} ms  {own / total:5.1%}")
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)


def package_of(filename: str) -> str:
    """The library (or app module) a profiled function lives in."""
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    if "/message-service/app/" in filename:
        return "app." + filename.split("/message-service/app/", 1)[1].split("/", 1)[0]
    if "/packages/" in filename:
        return filename.split("/packages/", 1)[1].split("/", 1)[0]
    if "/lib/python3" in filename:
        return "stdlib " + filename.rsplit("/lib/python3", 1)[1].split("/")[1].removesuffix(".py")
    return filename if filename.startswith("<") or filename == "~" else filename.rsplit("/", 1)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load")
    parser.add_argument("--turns", type=int, default=8, help="about how many exchanges a conversation gets")
    parser.add_argument("--profile", action="store_true", help="cProfile message-service, one more c=16 load")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-messages-") as temp:
        data_dir = Path(temp)
        with fleet(data_dir, message_env=hook_env(data_dir)) as running:
            bench_main(running, args, data_dir, started)
    print(f"whole run {time.perf_counter() - started:.0f} s")
    print("(a shared 2-core machine is noisy: repeat the run before trusting one figure)")


def bench_main(running: Fleet, args: argparse.Namespace, data_dir: Path, started: float) -> None:
    def fixed(*pids: int) -> Callable[[], set[int]]:
        return lambda: set(pids)

    def with_backends(pid: int) -> Callable[[], set[int]]:
        return lambda: {pid} | postgres_backends(pid)

    backends = running.backends()
    bench = Bench(
        standin=running.standin,
        llm=running.llm,
        service=running.messages,
        redis_url=running.message_redis.url,
        mongodb_url=running.mongodb.url,
        database=running.messages_database,
        totals_path=data_dir / "totals.json",
        profile_path=data_dir / "profile.out",
        pids={
            "message-service": fixed(running.messages.process.pid),
            "llm-service": fixed(running.llm.process.pid),
            "stand-in": fixed(running.standin.process.pid),
            "user-service+PG": with_backends(running.users.process.pid),
            "character-service+PG": with_backends(running.characters.process.pid),
            "conversation-service": fixed(running.conversations.process.pid),
            "nx-27017": fixed(backends["nx-27017"]),
            "redis (message-service)": fixed(backends["redis (message-service)"]),
            "redis (user-service)": fixed(backends["redis (user-service)"]),
            "loadgen": fixed(os.getpid()),
        },
    )
    args.urls = (running.users.url, running.characters.url, running.conversations.url)
    print(f"fleet started in {time.perf_counter() - started:.1f} s", flush=True)
    asyncio.run(run(bench, args, data_dir))


if __name__ == "__main__":
    main()
