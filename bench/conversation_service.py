"""Benchmark of conversation-service on the real fleet: list and create conversations vs hello-world.

    python bench/conversation_service.py [--duration 12] [--rounds 3] [--conversations 500]

Starts embedded PostgreSQL, Redis and nx-27017, real user-service and character-service processes and
conversation-service itself (`python run.py`, real mode, not mock) on free ports; registers a user, one
public character and 500 conversations of that user (through the API at concurrency 16: seeding time
reported), then reports in one run (requests/s, p50, p99):

- GET /api/v1/conversations?limit=20 at concurrency 32: a full page, so each request also counts the
  user's conversations (a find, then a `$match` + `$count` aggregate);
- POST /api/v1/conversations at concurrency 8, as a second user (the listed user keeps exactly 500).
  Each create calls character-service (the character, with the caller's token) and user-service (the
  default persona, with the service's token) and inserts; then, in the background, it tells
  character-service's counter and marks the conversation counted (a MongoDB update);
- a bare FastAPI hello-world (uvicorn, same settings, its own process) at concurrency 32;
- CPU ms per request of each process involved (utime + stime from /proc; PostgreSQL backends counted
  with the service they serve): the service, nx-27017 and the load generator share the machine's cores.

Share of time in MongoDB, measured two ways:

1. Command monitoring: a second conversation-service process on the same database, started the same way
   but with a bench-only `sitecustomize` on its PYTHONPATH that registers a pymongo.monitoring
   CommandListener (no app code changes) and writes its per-command totals on SIGUSR1. The list and
   create loads also run against it; the share is (sum of the durations of the commands a request
   awaits) / (sum of request latencies). A command's duration runs from sending it to its decoded
   reply, so it includes nx-27017's queue and any event-loop delay before the driver reads the reply:
   an upper bound of the time MongoDB itself costs. Background commands (the counter's) are shown apart.
2. Direct PyMongo: the list request's two queries (the same find with filter, projection, sort and
   limit, then the same `$match` + `$count`), from this process at concurrency 32 against the same
   database with the service's client options: the requests/s MongoDB alone allows, next to the
   service's; and the find alone, to show what the total costs.

The loads of each kind (list, direct, find only, monitored list; create, monitored create) alternate
in --rounds short rounds, so a neighbour's burst on a shared machine hits them alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loadgen import Result, build_request, hello_world, run_load  # noqa: E402
from bench.user_service import cpu_seconds, postgres_backends  # noqa: E402
from chat_common.embedded import free_port, start_mongodb, start_postgres, start_redis  # noqa: E402
from chat_common.mongo import MongoSettings, mongo_client  # noqa: E402
from chat_common.testing import ServiceProcess, serve_service  # noqa: E402
from chat_common.testing.fleet import (  # noqa: E402
    FleetUser,
    register_user,
    run_character_service,
    run_user_service,
)

LIST_PATH = "/api/v1/conversations?limit=20"
CREATE_PATH = "/api/v1/conversations"
SORT = [("pinned", -1), ("last_activity_at", -1), ("_id", -1)]
PROJECTION = {"counted_message_ids": 0}
# The commands a request awaits; anything else the service sent meanwhile ran in the background.
REQUEST_COMMANDS = {"list": {"find", "aggregate"}, "create": {"insert"}}

# Loaded by the monitored conversation-service only (PYTHONPATH), before run.py: it sums each MongoDB
# command's duration by command name and writes the totals to BENCH_MONGODB_TOTALS on SIGUSR1.
SITECUSTOMIZE = """
import json, os, signal
from pymongo import monitoring

class _Totals(monitoring.CommandListener):
    def __init__(self):
        self.totals = {}
    def started(self, event):
        pass
    def succeeded(self, event):
        entry = self.totals.setdefault(event.command_name, [0, 0.0])
        entry[0] += 1
        entry[1] += event.duration_micros / 1e6
    failed = succeeded

_listener = _Totals()
monitoring.register(_listener)

def _write(signum, frame):
    path = os.environ["BENCH_MONGODB_TOTALS"]
    with open(path + ".tmp", "w") as file:
        json.dump(_listener.totals, file)
    os.replace(path + ".tmp", path)

signal.signal(signal.SIGUSR1, _write)
"""


@contextmanager
def conversation_service(
    mongodb_url: str,
    database: str,
    users: ServiceProcess,
    characters: ServiceProcess,
    data_dir: Path,
    **env: str,
) -> Iterator[ServiceProcess]:
    values = {
        "ENVIRONMENT": "test",
        "MOCK_SERVICES": "false",
        "MONGODB_URL": mongodb_url,
        "MONGODB_DATABASE": database,
        "JWKS_URL": f"{users.url}/.well-known/jwks.json",
        "USER_SERVICE_URL": users.url,
        "CHARACTER_SERVICE_URL": characters.url,
        "JSON_LOGS": "false",
        "LOG_LEVEL": "WARNING",
        **env,
    }
    with serve_service(
        ROOT / "conversation-service", values, log_path=data_dir / "conversation-service.log"
    ) as service:
        yield service


async def create_character(characters_url: str, owner: FleetUser) -> str:
    body = {"name": "Bench Mira", "greeting": "Welcome aboard!", "visibility": "public"}
    async with httpx.AsyncClient(base_url=characters_url, headers=owner.headers, timeout=30) as client:
        response = await client.post("/api/v1/characters", json=body)
        response.raise_for_status()
        return str(response.json()["id"])


async def seed(base: str, owner: FleetUser, character_id: str, total: int) -> float:
    """`total` conversations of `owner` through the API at concurrency 16; seconds taken."""
    start = time.perf_counter()
    remaining = iter(range(total))

    async def worker(client: httpx.AsyncClient) -> None:
        for _ in remaining:
            response = await client.post(CREATE_PATH, json={"character_id": character_id})
            response.raise_for_status()

    async with httpx.AsyncClient(base_url=base, headers=owner.headers, timeout=60) as client:
        await asyncio.gather(*[worker(client) for _ in range(16)])
        listed = (await client.get(LIST_PATH)).json()
    if listed["total"] != total:
        raise RuntimeError(f"seeded {total} conversations but the list says {listed['total']}")
    return time.perf_counter() - start


class DirectList:
    """The list request's find and count, straight to MongoDB from this process (the service's client
    options), as a load like `run_load`'s."""

    def __init__(self, mongodb_url: str, database: str, user_id: str, *, count: bool = True) -> None:
        self.client = mongo_client(MongoSettings(mongodb_url=mongodb_url, service_name="bench"))
        self.collection = self.client[database]["conversations"]
        self.query: dict[str, Any] = {"user_id": user_id, "deleted_at": None}
        self.count = count

    async def one(self) -> bool:
        rows = await self.collection.find(self.query, PROJECTION).sort(SORT).skip(0).limit(20).to_list()
        if not self.count:
            return len(rows) == 20
        pipeline = [{"$match": self.query}, {"$count": "n"}]
        counted = await (await self.collection.aggregate(pipeline)).to_list()
        return len(rows) == 20 and bool(counted)

    async def load(self, duration: float, concurrency: int = 32) -> Result:
        result = Result()
        stop_at = time.perf_counter() + duration

        async def worker() -> None:
            while (start := time.perf_counter()) < stop_at:
                if await self.one():
                    result.latencies.append(time.perf_counter() - start)
                else:
                    result.errors += 1

        await asyncio.gather(*[worker() for _ in range(concurrency)])
        result.elapsed = duration
        return result


def read_totals(pid: int, path: Path) -> dict[str, tuple[int, float]]:
    """Ask the monitored service for its MongoDB command totals (SIGUSR1) and read them."""
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the monitored conversation-service did not write its MongoDB totals")
        time.sleep(0.02)
    return {name: (int(n), float(s)) for name, (n, s) in json.loads(path.read_text()).items()}


Load = Callable[[float], Awaitable[Result]]
Pids = Callable[[], set[int]]


@dataclass
class Measured:
    """One load over every round: its requests, CPU seconds per process group, and (monitored service
    only) the MongoDB commands sent meanwhile, name -> [count, seconds]."""

    label: str
    load: Load
    groups: dict[str, Pids]
    watched: tuple[int, Path] | None = None
    result: Result = field(default_factory=Result)
    cpu: dict[str, float] = field(default_factory=dict)
    commands: dict[str, list[float]] = field(default_factory=dict)

    async def round(self, seconds: float) -> None:
        before = {name: {pid: cpu_seconds(pid) for pid in pids()} for name, pids in self.groups.items()}
        totals = await asyncio.to_thread(read_totals, *self.watched) if self.watched else {}
        result = await self.load(seconds)
        await asyncio.sleep(0.5)  # background work of these requests (the counter) finishes, and counts
        for name, pids in self.groups.items():
            spent = sum(cpu_seconds(pid) - before[name].get(pid, 0.0) for pid in pids() | set(before[name]))
            self.cpu[name] = self.cpu.get(name, 0.0) + spent
        if self.watched:
            for command, (count, spent) in (await asyncio.to_thread(read_totals, *self.watched)).items():
                entry = self.commands.setdefault(command, [0, 0.0])
                entry[0] += count - totals.get(command, (0, 0.0))[0]
                entry[1] += spent - totals.get(command, (0, 0.0))[1]
        self.result.latencies += result.latencies
        self.result.errors += result.errors
        self.result.elapsed += result.elapsed

    def report(self, awaited: set[str]) -> None:
        done = max(len(self.result.latencies), 1)
        print(f"{self.label:<36} {self.result.summary()}")
        print("  CPU ms/req: " + ", ".join(f"{name} {s * 1000 / done:.2f}" for name, s in self.cpu.items()))
        if not self.watched:
            return
        in_request, parts = 0.0, []
        for command, (count, spent) in sorted(self.commands.items()):
            if count:
                in_request += spent if command in awaited else 0.0
                where = "" if command in awaited else " (background)"
                parts.append(f"{command} {count / done:.2f}x {spent * 1000 / count:.2f} ms{where}")
        latency = sum(self.result.latencies)
        print(f"  MongoDB commands per request: {'; '.join(parts)}")
        print(
            f"  MongoDB time per request {in_request * 1000 / done:.2f} ms of mean latency "
            f"{latency * 1000 / done:.2f} ms: share {in_request / latency if latency else 0.0:.0%}",
            flush=True,
        )


async def alternate(loads: list[Measured], duration: float, rounds: int) -> None:
    """Each load warmed up once, then all of them in turn, `rounds` times, `duration` seconds each in
    all: a neighbour's burst on a shared machine hits every load alike."""
    for measured in loads:
        await measured.load(1.0)
    for _ in range(rounds):
        for measured in loads:
            await measured.round(duration / rounds)


def request_load(url: str, raw: bytes, concurrency: int) -> Load:
    def load(seconds: float) -> Awaitable[Result]:
        return run_load(url, raw, concurrency=concurrency, duration=seconds, warmup=0)

    return load


def fixed(*pids: int) -> Pids:
    return lambda: set(pids)


def with_backends(pid: int) -> Pids:
    """A service's process and the PostgreSQL backends serving it."""
    return lambda: {pid} | postgres_backends(pid)


async def measure(stack: ExitStack, fleet: dict[str, Any], args: argparse.Namespace, data_dir: Path) -> None:
    service: ServiceProcess = fleet["service"]
    users: ServiceProcess = fleet["users"]
    characters: ServiceProcess = fleet["characters"]
    lister, creator = fleet["lister"], fleet["creator"]
    character_id = await create_character(characters.url, lister)
    seconds = await seed(service.url, lister, character_id, args.conversations)
    print(
        f"seeded {args.conversations} conversations through the API in {seconds:.1f} s "
        f"({args.conversations / seconds:.0f}/s, concurrency 16)",
        flush=True,
    )

    totals_path = data_dir / "mongodb-totals.json"
    hook_dir = data_dir / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
    watched = stack.enter_context(
        conversation_service(
            fleet["mongodb_url"],
            fleet["database"],
            users,
            characters,
            data_dir,
            PYTHONPATH=str(hook_dir),
            BENCH_MONGODB_TOTALS=str(totals_path),
        )
    )
    direct = DirectList(fleet["mongodb_url"], fleet["database"], lister.id)
    find_only = DirectList(fleet["mongodb_url"], fleet["database"], lister.id, count=False)
    create_headers = {**creator.headers, "Content-Type": "application/json"}
    create_body = json.dumps({"character_id": character_id}).encode()
    mongodb, bench = fixed(fleet["mongodb_pid"]), fixed(os.getpid())
    downstream = {"user-service+PG": with_backends(users.process.pid)}
    downstream["character-service+PG"] = with_backends(characters.process.pid)
    monitor = (watched.process.pid, totals_path)
    lists = [
        Measured(
            "GET list limit=20 c=32",
            request_load(service.url, build_request(f"{service.url}{LIST_PATH}", headers=lister.headers), 32),
            {"conversation-service": fixed(service.process.pid), "nx-27017": mongodb, "loadgen": bench},
        ),
        Measured(
            "direct PyMongo find+count c=32",
            direct.load,
            {"nx-27017": mongodb, "bench (PyMongo)": bench},
        ),
        Measured(
            "direct PyMongo find only c=32",
            find_only.load,
            {"nx-27017": mongodb, "bench (PyMongo)": bench},
        ),
        Measured(
            "GET list c=32, monitored service",
            request_load(watched.url, build_request(f"{watched.url}{LIST_PATH}", headers=lister.headers), 32),
            {"conversation-service": fixed(watched.process.pid), "nx-27017": mongodb, "loadgen": bench},
            monitor,
        ),
    ]
    creates = [
        Measured(
            "POST create c=8",
            request_load(
                service.url,
                build_request(f"{service.url}{CREATE_PATH}", "POST", create_headers, create_body),
                8,
            ),
            {"conversation-service": fixed(service.process.pid), "nx-27017": mongodb, **downstream},
        ),
        Measured(
            "POST create c=8, monitored service",
            request_load(
                watched.url,
                build_request(f"{watched.url}{CREATE_PATH}", "POST", create_headers, create_body),
                8,
            ),
            {"conversation-service": fixed(watched.process.pid), "nx-27017": mongodb, **downstream},
            monitor,
        ),
    ]
    try:
        await alternate(lists, args.duration, args.rounds)
        await alternate(creates, args.duration, args.rounds)
    finally:
        await direct.client.close()
        await find_only.client.close()
    with hello_world(free_port()) as hello_url:
        hello = await run_load(
            hello_url, build_request(f"{hello_url}/hello"), concurrency=32, duration=args.duration
        )

    for measured in lists:
        measured.report(REQUEST_COMMANDS["list"])
    for measured in creates:
        measured.report(REQUEST_COMMANDS["create"])
    print(f"{'hello-world c=32':<36} {hello.summary()}")
    listed, direct_result, find_result = lists[0].result, lists[1].result, lists[2].result
    created = creates[0].result
    print(
        f"list vs hello-world: {listed.rps / hello.rps:.3f}   "
        f"create vs hello-world: {created.rps / hello.rps:.3f}"
    )
    print(f"list vs direct PyMongo find+count (MongoDB alone): {listed.rps / direct_result.rps:.2f}")
    print(
        f"direct find+count vs find only: {direct_result.rps / find_result.rps:.2f} (the cost of the total)"
    )
    failed = sum(m.result.errors for m in lists + creates)
    if failed:
        warnings = [line for line in service.log_tail(20_000).splitlines() if line.strip()]
        print(f"{failed} requests failed; the services' last log lines:", *warnings[-4:], sep="\n  ")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=12.0, help="seconds per load, over all rounds")
    parser.add_argument("--rounds", type=int, default=3, help="rounds the loads alternate in")
    parser.add_argument("--conversations", type=int, default=500, help="the listed user's conversations")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-conversations-") as temp, ExitStack() as stack:
        data_dir = Path(temp)
        quiet = {"LOG_LEVEL": "WARNING"}
        postgres = start_postgres(data_dir / "postgres", free_port())
        stack.callback(postgres.stop)
        redis = start_redis(data_dir / "redis", free_port(), persist=False)
        stack.callback(redis.stop)
        mongodb = start_mongodb(data_dir / "mongodb", free_port())
        stack.callback(mongodb.stop)
        users = stack.enter_context(run_user_service(postgres.url, redis.url, data_dir, **quiet))
        jwks = f"{users.url}/.well-known/jwks.json"
        characters = stack.enter_context(run_character_service(postgres.url, jwks, data_dir, **quiet))
        database = f"conversation_bench_{uuid.uuid4().hex[:8]}"
        service = stack.enter_context(
            conversation_service(mongodb.url, database, users, characters, data_dir)
        )
        assert mongodb.process is not None
        fleet = {
            "users": users,
            "characters": characters,
            "service": service,
            "mongodb_url": mongodb.url,
            "mongodb_pid": mongodb.process.pid,
            "database": database,
            "lister": register_user(users.url, "lister"),
            "creator": register_user(users.url, "creator"),
        }
        print(f"fleet started in {time.perf_counter() - started:.1f} s", flush=True)
        asyncio.run(measure(stack, fleet, args, data_dir))
    print(f"whole run {time.perf_counter() - started:.0f} s")
    print("(a shared 2-core machine is noisy: repeat the run before trusting one figure)")


if __name__ == "__main__":
    main()
