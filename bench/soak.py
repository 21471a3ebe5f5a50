"""Soak run of the whole fleet: mixed traffic for a bounded time, then its books and its memory checked.

    python bench/soak.py [--duration 300] [--concurrency 32] [--warmup 20]

Starts the fleet (bench/fleet.py: embedded PostgreSQL, two Redis, nx-27017, the five services as
processes and the LM Studio stand-in at zero delay) on free ports in a temporary directory, seeds a
public catalogue, and runs `--concurrency` virtual users (bench/soak_traffic.py) for `--warmup` +
`--duration` seconds, each a closed loop of sign-ups, logins, character browsing (list, search,
get), new conversations and their list, the message path and single messages, and chats: streamed,
streamed with a disconnect (after `message.created` or the first `delta`) and a reattach
(`Last-Event-ID`) whose text must equal the stored reply, and plain. Then, with traffic stopped, it
waits (at most `SETTLE_SECONDS`) until no reply is generating, no commit, release or follow-up is
pending and no reservation is held, and checks the fleet's invariants
(chat_common.testing.invariants) on every user and every user message a client saw accepted.

Settings that differ from a deployment's, and why: `MESSAGES_PER_MINUTE` is 1,000,000 (a virtual
user chats far faster than a person; a 429 would still be counted apart, as expected behaviour),
llm-service lets 64 requests reach the stand-in at once, users start with 100,000,000 credits, and
passwords are hashed with bcrypt cost 4 (the test kit's: cost 12 would spend the machine's two
cores on hashing; bench/user_service.py measures logins at cost 12).

Reported: p50/p99 per operation over the measured `--duration` (the warm-up's latencies are left
out; `*.first_token` is the time to a stream's first `delta`, `chat.reattach` the send to the end of
the reattached stream, `chat.resume` the reattached stream alone), errors by operation, status and
code (an SSE `error` event as status 200, `sse:<code>`; no HTTP answer as status 0 and the
exception), exchanges completed, reattaches checked, and each process's resident memory (VmRSS from
/proc, with its children; PostgreSQL's as PSS) after the warm-up and at each quarter of the run.

Memory bound: each service process (and the stand-in) may grow by at most `BOUND_MIB` MiB (about
15% of the largest) from the end of the warm-up to the end of traffic. After the warm-up, pools,
caches and the allocator's high-water marks are at their working size and CPython rarely gives memory
back, so a steady service stays flat give or take fragmentation (two full runs here: at most
+4.3 MiB, message-service), while a leak grows with the traffic: the table shows each growth per
exchange, and the bound catches a leak of about 4 KiB per exchange at the ~13 exchanges/s this
loaded 2-core machine served (2 KiB at 25/s). The backends are reported, not bounded: they keep
the data the run writes (reply event streams stay in Redis for `STREAM_RETENTION_SECONDS`,
documents, ledger rows, PostgreSQL's buffers filling).

Exits non-zero when a bound or an invariant is broken, a reattached reply differs from the stored
one, or no exchange completed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx
from pymongo import AsyncMongoClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fleet import Fleet, children, fleet, pss_bytes, rss_bytes  # noqa: E402
from bench.soak_traffic import WORDS, Shared, Stats, VirtualUser  # noqa: E402
from bench.user_service import cpu_seconds  # noqa: E402
from chat_common.testing.fleet import register_user  # noqa: E402
from chat_common.testing.invariants import FleetDatabases, Violation, check_invariants  # noqa: E402

BOUND_MIB = 16
SETTLE_SECONDS = 120.0
MIB = 1024 * 1024
POSTGRES = "postgresql (PSS)"


async def seed_catalogue(running: Fleet, count: int) -> list[str]:
    """`count` public characters by a few authors, named and tagged from the bench's words."""
    authors = [await asyncio.to_thread(register_user, running.users.url, "author") for _ in range(4)]
    async with httpx.AsyncClient(base_url=running.characters.url, timeout=60) as client:

        async def create(index: int) -> str:
            words = random.sample(WORDS, 3)
            created = await client.post(
                "/api/v1/characters",
                json={
                    "name": f"{words[0].title()} {words[1].title()} {index}",
                    "description": f"{{{{char}}}} keeps the {words[2]} and talks with {{{{user}}}}.",
                    "greeting": f"Welcome to the {words[0]}, {{{{user}}}}!",
                    "tags": words,
                    "visibility": "public",
                },
                headers=authors[index % len(authors)].headers,
            )
            created.raise_for_status()
            return str(created.json()["id"])

        ids = []
        for start in range(0, count, 16):
            ids += await asyncio.gather(*[create(i) for i in range(start, min(count, start + 16))])
    return ids


def tracked(running: Fleet) -> dict[str, int]:
    """Every process of the fleet: name -> pid (PostgreSQL's under the name `POSTGRES`)."""
    backends = running.backends()
    return {**running.services(), POSTGRES: backends.pop("postgresql"), **backends}


def sample(processes: dict[str, int]) -> dict[str, tuple[int, float]]:
    """Each process's (resident bytes, CPU seconds so far), with its children: RSS, but PostgreSQL's
    postmaster and backends as PSS (each maps the shared buffers: their RSS would count them each time)."""
    found = {}
    for name, pid in processes.items():
        pids = {pid} | children(pid)
        memory = pss_bytes(pids) if name == POSTGRES else rss_bytes(pids)
        found[name] = (memory, sum(cpu_seconds(p) for p in pids))
    return found


async def settle(running: Fleet, limit: float) -> tuple[float, dict[str, int]]:
    """Wait until the bookkeeping behind the traffic is done: no reply generating, no commit,
    release or follow-up pending, no reservation held. (seconds waited, what was still under way)."""
    start = time.monotonic()
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(running.mongodb.url)
    conn = await asyncpg.connect(running.users_database_url)
    try:
        messages = client[running.messages_database]["messages"]
        while True:
            pending = {
                "generating": await messages.count_documents({"status": "generating"}),
                "credits pending": await messages.count_documents(
                    {"generation.credits": {"$in": ["reserved", "commit_pending", "release_pending"]}}
                ),
                "follow-ups pending": await messages.count_documents({"followups_pending": True}),
                "reservations held": int(
                    await conn.fetchval("SELECT count(*) FROM users.credit_reservation WHERE status = 'held'")
                ),
            }
            if not any(pending.values()) or time.monotonic() - start > limit:
                return time.monotonic() - start, pending
            await asyncio.sleep(0.5)
    finally:
        await conn.close()
        await client.close()


async def soak(running: Fleet, args: argparse.Namespace) -> int:
    started = time.monotonic()
    characters = await seed_catalogue(running, args.characters)
    print(f"seeded {len(characters)} public characters in {time.monotonic() - started:.1f} s", flush=True)
    urls = {
        "users": running.users.url,
        "characters": running.characters.url,
        "conversations": running.conversations.url,
        "messages": running.messages.url,
    }
    shared = Shared(urls, characters)
    processes = tracked(running)
    warmup_end = time.monotonic() + args.warmup
    stop_at = warmup_end + args.duration
    users = [asyncio.create_task(VirtualUser(shared).run(stop_at)) for _ in range(args.concurrency)]
    await asyncio.sleep(max(0.0, warmup_end - time.monotonic()))
    warmup, shared.stats = shared.stats, Stats()
    before, load_before = sample(processes), os.getloadavg()
    print(
        f"warm-up done ({args.warmup:.0f} s: {warmup.exchanges} exchanges, {sum(warmup.errors.values())} "
        f"errors); measuring {args.duration:.0f} s at concurrency {args.concurrency}",
        flush=True,
    )
    trend: list[dict[str, tuple[int, float]]] = []
    for quarter in range(1, 5):
        await asyncio.sleep(max(0.0, warmup_end + quarter * args.duration / 4 - time.monotonic()))
        trend.append(sample(processes))
    load_after = os.getloadavg()
    await asyncio.gather(*users)
    measured = time.monotonic() - warmup_end
    waited, pending = await settle(running, SETTLE_SECONDS)
    print(f"traffic stopped; bookkeeping settled in {waited:.1f} s", flush=True)
    databases = FleetDatabases(
        users_url=running.users_database_url,
        mongodb_url=running.mongodb.url,
        messages_database=running.messages_database,
        conversations_database=running.conversations_database,
    )
    violations = await check_invariants(databases, accepted_user_messages=shared.accepted, settled=True)
    stats = shared.stats
    print()
    report_operations(stats, measured)
    broken = report_memory(running, before, trend, measured, stats.exchanges)
    print(
        f"\nload average (1 min) at start {load_before[0]:.2f}, at end {load_after[0]:.2f} "
        f"(2 cores, shared with other work)"
    )
    print(
        f"exchanges completed: {stats.exchanges} ({stats.exchanges / measured:.1f}/s); reattached and "
        f"checked against the stored reply: {stats.reattached} equal ({stats.resumed_text} resumed with text "
        f"still to come, the rest with only the end), {len(stats.mismatched)} different"
    )
    for detail in stats.mismatched[:5]:
        print(f"  DIFFERENT {detail}")
    if any(pending.values()):
        print(f"still under way after {SETTLE_SECONDS:.0f} s: {pending}")
    report_invariants(violations, len(shared.user_ids), len(shared.accepted))
    failed = broken or violations or stats.mismatched or not stats.exchanges
    print(f"\nRESULT: {'FAILED' if failed else 'PASSED'}")
    return 1 if failed else 0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


def report_operations(stats: Stats, seconds: float) -> None:
    errors_by_op: dict[str, int] = {}
    for (operation, _, _), count in stats.errors.items():
        errors_by_op[operation] = errors_by_op.get(operation, 0) + count
    print(f"{'operation':<28}{'ok':>8}{'per s':>8}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'errors':>8}")
    for operation in sorted(set(stats.latencies) | set(errors_by_op)):
        values = stats.latencies.get(operation, [])
        mean = statistics.fmean(values) * 1000 if values else float("nan")
        print(
            f"{operation:<28}{len(values):>8}{len(values) / seconds:>8.1f}{pct(values, 0.5):>9.1f}"
            f"{pct(values, 0.99):>9.1f}{mean:>9.1f}{errors_by_op.get(operation, 0):>8}"
        )
    print("\nerrors by operation, status and code" + ("" if stats.errors else ": none"))
    for (operation, status, code), count in sorted(stats.errors.items()):
        note = "  (expected: the per-user limit)" if status == 429 else ""
        print(f"  {operation:<26} {status:>4} {code:<32} {count:>6}{note}")


def report_memory(
    running: Fleet,
    before: dict[str, tuple[int, float]],
    trend: list[dict[str, tuple[int, float]]],
    seconds: float,
    exchanges: int,
) -> bool:
    """The memory table (MiB after the warm-up and at each quarter of the run, the growth, in MiB and
    in bytes per exchange, CPU % of one core over the run); True when a service broke its bound."""
    bounded = set(running.services())
    broken = False
    print(
        f"\nresident memory (MiB) after the warm-up, at each quarter of the run, and growth; "
        f"bound per service: +{BOUND_MIB} MiB"
    )
    row = "{:<24}{:>7}{:>7}{:>7}{:>7}{:>7}{:>8}{:>7}{:>7}  {:<7}{:>6}"
    head = ("process", "start", "1/4", "2/4", "3/4", "end", "growth", "B/exch", "bound", "result", "CPU %")
    print(row.format(*head))
    for name, (start, cpu_start) in before.items():
        memory = [point[name][0] for point in trend]
        growth = memory[-1] - start
        cpu = (trend[-1][name][1] - cpu_start) / seconds * 100
        if name in bounded:
            ok = growth <= BOUND_MIB * MIB
            broken |= not ok
            limit, result = f"+{BOUND_MIB}", "ok" if ok else "BROKEN"
        else:
            limit, result = "-", "(data)"
        sizes = [f"{value / MIB:.1f}" for value in [start, *memory]]
        per = f"{growth / max(exchanges, 1):.0f}"
        print(row.format(name, *sizes, f"{growth / MIB:+.1f}", per, limit, result, f"{cpu:.0f}"))
    return broken


def report_invariants(violations: list[Violation], users: int, accepted: int) -> None:
    scope = f"every user ({users} signed up by the run), {accepted} accepted user messages"
    if not violations:
        print(f"invariants: all hold ({scope})")
        return
    print(f"invariants: {len(violations)} BROKEN ({scope}):")
    for violation in violations[:20]:
        print(f"  - {violation}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of measured traffic")
    parser.add_argument("--concurrency", type=int, default=32, help="virtual users")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds of traffic before measuring")
    parser.add_argument("--characters", type=int, default=120, help="public characters to browse")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as temp, fleet(Path(temp)) as running:
        print(f"fleet started in {time.monotonic() - started:.1f} s", flush=True)
        code = asyncio.run(soak(running, args))
    print(f"whole run {time.monotonic() - started:.0f} s")
    sys.exit(code)


if __name__ == "__main__":
    main()
