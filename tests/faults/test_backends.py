"""Backends killed (SIGKILL) during live chat traffic and started again on the same port and data:
clients see an error naming the lost dependency (or nothing, for a reply already generating), the
fleet serves again by itself within seconds, and afterwards the books hold."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from pymongo import AsyncMongoClient

from tests.faults.conftest import Fleet
from tests.faults.traffic import DEPENDENCY_STATUSES, Report, fault, run_scenario

# Replies of about a second (MAX_TOKENS tokens): some are generating when the backend is killed.
REPLY_TOKENS_PER_SECOND = 20


def assert_failures_name(report: Report, named: set[tuple[str, str]]) -> None:
    """Every send during the fault completed or failed with one of `named` ((service, code)): a plain
    send with 502/503/504, a streamed one refused so or ended by an SSE `error` event; at least one
    failed; the books hold."""
    failed = [o for o in report.during if not o.ok]
    assert failed, f"nothing failed during {report.name}: {report.seen()}"
    for outcome in failed:
        assert outcome.status in (*DEPENDENCY_STATUSES, 200), f"{report.name}: {outcome.describe()}"
        assert (outcome.service, outcome.code) in named, f"{report.name}: {outcome.describe()}"
    assert report.violations == [], [str(v) for v in report.violations]


async def assert_no_accepted_message_lost_its_reply(fleet: Fleet, report: Report) -> None:
    """Every message the fleet accepted in the scenario (before, during and after the fault) got its
    reply: a refused send was refused before anything was stored, and a reply generating when the
    backend went away still completed (read from message-service's MongoDB database). The one reply
    that may fail is one whose start could not be told (Redis went away between storing the messages
    and publishing `message.created`): it fails before its first piece, empty, naming Redis, and its
    credits are released (the invariants)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        fleet.databases.mongodb_url, serverSelectionTimeoutMS=15_000
    )
    try:
        messages = client[fleet.databases.messages_database]["messages"]
        query = {"role": "assistant", "parent_id": {"$in": report.accepted}, "status": "failed"}
        failed = [
            f"{m['_id']}: {(m.get('generation') or {}).get('error_code')}"
            async for m in messages.find(query)
            if not _unstarted_for_redis(m)
        ]
    finally:
        await client.close()
    assert failed == [], f"{report.name}: accepted messages whose reply failed: {failed}"


def _unstarted_for_redis(reply: dict[str, Any]) -> bool:
    generation = reply.get("generation") or {}
    return (
        reply.get("content") == ""
        and generation.get("error_code") == "dependency_unavailable"
        and "redis" in (generation.get("error_message") or "")
    )


def kill_and_restart(fleet: Fleet, backend: str) -> Callable[[], AbstractAsyncContextManager[None]]:
    """SIGKILL the backend, then start it again on its port and data directory."""
    server = fleet.backends[backend]
    return fault(server.kill, server.start)


async def test_redis_down_and_back(fleet: Fleet) -> None:
    """message-service's limits, locks and streams: a send is refused with a 503 naming Redis; a reply
    already generating completes (its readers are told its end from MongoDB)."""
    fleet.standin.configure(tokens_per_second=REPLY_TOKENS_PER_SECOND)
    report = await run_scenario(fleet, "Redis killed and restarted", kill_and_restart(fleet, "redis"))
    assert_failures_name(report, {("redis", "dependency_unavailable")})
    await assert_no_accepted_message_lost_its_reply(fleet, report)


async def test_mongodb_killed_and_restarted(fleet: Fleet) -> None:
    """conversation- and message-service's documents: a 503 naming MongoDB, or naming
    conversation-service when message-service reads the conversation from it (a 504 when
    conversation-service waits for MongoDB longer than message-service waits for it, as here)."""
    report = await run_scenario(fleet, "MongoDB killed and restarted", kill_and_restart(fleet, "mongodb"))
    assert_failures_name(
        report,
        {
            ("mongodb", "dependency_unavailable"),
            ("conversation-service", "dependency_unavailable"),
            ("conversation-service", "dependency_timeout"),
        },
    )


async def test_postgresql_killed_and_restarted(fleet: Fleet) -> None:
    """user- and character-service's tables: a send is refused naming the service whose PostgreSQL is
    gone (its reservation or its character); a reply whose charge could not be made is charged once
    when user-service is back."""
    fleet.standin.configure(tokens_per_second=REPLY_TOKENS_PER_SECOND)
    report = await run_scenario(fleet, "PostgreSQL killed and restarted", kill_and_restart(fleet, "postgres"))
    assert_failures_name(
        report,
        {("user-service", "dependency_unavailable"), ("character-service", "dependency_unavailable")},
    )
    await assert_no_accepted_message_lost_its_reply(fleet, report)
