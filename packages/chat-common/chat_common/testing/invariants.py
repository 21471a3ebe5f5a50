"""The fleet's bookkeeping invariants, read straight from its databases: what no fault may break.

Used by the fault harness (tests/faults) after every scenario and by the soak run (bench/soak.py) at
its end. It reads user-service's PostgreSQL database (schema `users`: `user`, `credit_transaction`,
`credit_reservation`) and the MongoDB databases of message-service (`messages`) and
conversation-service (`conversations`); it never writes.

The invariants (docs/reliability.md):

- `balance`: every user's balance is the sum of their ledger rows (the first of which is the signup
  bonus, `INITIAL_CREDITS`), and never negative.
- `reservation`: each reservation has exactly one `reservation` ledger row (its debit) and one
  settlement that matches its status: committed (a `refund` row of what was reserved but not
  charged, none when all of it was), released or expired (a row giving all of it back); none is held
  past its TTL, and once `settled` none is held at all.
- `reply`: once `settled`, every reply is `completed`, `stopped` or `failed` with its credits settled
  (`committed` for completed and stopped; for failed `released`, or `none` without a reservation, or
  `committed` for the part generated before the failure, which the reply keeps) and its follow-ups
  told.
- `charge`: a reply was charged exactly once: the committed amounts of all the reservations made for
  it (a continued reply has one per continuation) add up to what it says it spent, and its last
  reservation, once committed, was committed with the reply's last cost.
- `message_stored`: every user message a client saw accepted is stored (`accepted_user_messages`).
- `message_count`: once `settled`, a live conversation's `message_count` equals its stored messages,
  greetings excepted (they are the character's, not sent by anyone), deletes included: a message
  deleted at message-service leaves the count once conversation-service is told (at once, or by the
  sweeper from its durable `deletions` record).

While traffic runs (`settled=False`), replies generating, reservations held within their TTL and
pending commits, releases and follow-ups are allowed: they are the bookkeeping under way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from bson import ObjectId
from pymongo import AsyncMongoClient

END_STATES = ("completed", "stopped", "failed")
SETTLEMENT_KINDS = {"committed": "refund", "released": "released", "expired": "expired"}


@dataclass(frozen=True)
class FleetDatabases:
    """Where the fleet keeps what the invariants read."""

    users_url: str  # user-service's PostgreSQL database, postgresql://...
    mongodb_url: str  # the MongoDB server of message- and conversation-service
    messages_database: str  # message-service's MONGODB_DATABASE
    conversations_database: str  # conversation-service's MONGODB_DATABASE


@dataclass(frozen=True)
class Violation:
    """One broken invariant: which (`balance`, `reservation`, `reply`, `charge`, `message_stored`,
    `message_count`), of what (a user, reservation, message or conversation id), and how."""

    invariant: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"{self.invariant} {self.subject}: {self.detail}"


async def check_invariants(
    databases: FleetDatabases,
    *,
    user_ids: Iterable[str] | None = None,
    accepted_user_messages: Iterable[str] = (),
    settled: bool = True,
    now: datetime | None = None,
) -> list[Violation]:
    """Every violation of the invariants for `user_ids` (None: every user), empty when all hold.

    `accepted_user_messages`: ids of user messages the clients saw accepted (a 201, or the SSE
    `message.created` event). `settled=True` after a scenario's recovery: nothing may still be under
    way. `now`: the time reservations' TTLs are judged at (default: the clock)."""
    now = now or datetime.now(UTC)
    wanted = None if user_ids is None else sorted({str(u) for u in user_ids})
    violations = await _check_credits(databases.users_url, wanted, settled, now)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        databases.mongodb_url, serverSelectionTimeoutMS=15_000, tz_aware=True
    )
    try:
        messages = client[databases.messages_database]["messages"]
        conversations = client[databases.conversations_database]["conversations"]
        by_user = {} if wanted is None else {"user_id": {"$in": wanted}}
        stored = [m async for m in messages.find(by_user)]
        live = [c async for c in conversations.find({**by_user, "deleted_at": None})]
        accepted = list(accepted_user_messages)
        found = await _stored_ids(messages, accepted)
    finally:
        await client.close()
    violations += _check_replies(stored, settled)
    violations += await _check_charges(databases.users_url, stored)
    violations += [
        Violation("message_stored", message_id, "accepted by the fleet but not stored")
        for message_id in accepted
        if message_id not in found
    ]
    if settled:
        violations += _check_counts(live, stored)
    return violations


def assert_invariants(violations: list[Violation]) -> None:
    """Fail with every violation listed."""
    assert not violations, "invariants broken:\n" + "\n".join(f"- {v}" for v in violations)


async def _check_credits(
    users_url: str, user_ids: list[str] | None, settled: bool, now: datetime
) -> list[Violation]:
    conn = await asyncpg.connect(users_url, timeout=30)
    try:
        filter_users = "" if user_ids is None else "WHERE u.id = ANY($1::uuid[])"
        args: list[Any] = [] if user_ids is None else [user_ids]
        balances = await conn.fetch(
            f"""SELECT u.id, u.credits, COALESCE(SUM(t.amount), 0) AS ledger
                FROM users."user" u LEFT JOIN users.credit_transaction t ON t.user_id = u.id
                {filter_users} GROUP BY u.id, u.credits""",
            *args,
        )
        filter_reservations = "" if user_ids is None else "WHERE r.user_id = ANY($1::uuid[])"
        reservations = await conn.fetch(
            f"""SELECT r.id, r.amount, r.committed_amount, r.status, r.expires_at,
                       COALESCE(array_agg(t.kind) FILTER (WHERE t.id IS NOT NULL), '{{}}') AS kinds,
                       COALESCE(array_agg(t.amount) FILTER (WHERE t.id IS NOT NULL), '{{}}') AS amounts
                FROM users.credit_reservation r
                LEFT JOIN users.credit_transaction t ON t.reservation_id = r.id
                {filter_reservations} GROUP BY r.id""",
            *args,
        )
    finally:
        await conn.close()
    violations = []
    for row in balances:
        if row["credits"] != row["ledger"]:
            detail = f"balance {row['credits']} but the ledger adds up to {row['ledger']}"
            violations.append(Violation("balance", str(row["id"]), detail))
        if row["credits"] < 0:
            violations.append(Violation("balance", str(row["id"]), f"negative balance {row['credits']}"))
    for row in reservations:
        violations += [
            Violation("reservation", str(row["id"]), problem)
            for problem in _reservation_problems(row, settled, now)
        ]
    return violations


def _reservation_problems(row: Any, settled: bool, now: datetime) -> list[str]:
    rows = list(zip(row["kinds"], row["amounts"], strict=True))
    debits = [amount for kind, amount in rows if kind == "reservation"]
    settlements = [(kind, amount) for kind, amount in rows if kind != "reservation"]
    problems = []
    if debits != [-row["amount"]]:
        problems.append(f"debited {debits} for a reservation of {row['amount']}")
    status = row["status"]
    if status == "held":
        if row["expires_at"] < now:
            problems.append(f"held past its TTL (expired at {row['expires_at'].isoformat()})")
        elif settled:
            problems.append("still held after recovery")
        if settlements:
            problems.append(f"held but settled by {settlements}")
        return problems
    kind = SETTLEMENT_KINDS.get(status)
    if kind is None:
        return [*problems, f"unknown status {status!r}"]
    given_back = row["amount"] - (row["committed_amount"] or 0) if status == "committed" else row["amount"]
    expected = [(kind, given_back)] if given_back else []
    if settlements != expected:
        problems.append(f"{status} with ledger rows {settlements}, expected {expected}")
    return problems


async def _stored_ids(messages: Any, ids: list[str]) -> set[str]:
    valid = [ObjectId(i) for i in ids if ObjectId.is_valid(i)]
    if not valid:
        return set()
    query = {"_id": {"$in": valid}, "role": "user"}
    return {str(m["_id"]) async for m in messages.find(query, {"_id": 1})}


def _is_greeting(message: dict[str, Any]) -> bool:
    return ":greeting:" in str(message.get("unique_key", ""))


def _check_replies(stored: list[dict[str, Any]], settled: bool) -> list[Violation]:
    violations = []
    for message in stored:
        generation = message.get("generation")
        if message.get("role") != "assistant" or generation is None:
            continue
        subject, status, credits = str(message["_id"]), message.get("status"), generation.get("credits")
        if status == "generating":
            if settled:
                violations.append(Violation("reply", subject, "still generating after recovery"))
            continue
        if status not in END_STATES:
            violations.append(Violation("reply", subject, f"unknown status {status!r}"))
            continue
        if not settled:
            continue
        # A reply that failed midway keeps the part generated before the failure, and pays for it.
        wanted = ("released", "none", "committed") if status == "failed" else ("committed",)
        if credits not in wanted:
            violations.append(Violation("reply", subject, f"{status} with credits {credits!r}"))
        if message.get("followups_pending"):
            violations.append(Violation("reply", subject, f"{status}, its follow-ups still pending"))
    return violations


async def _check_charges(users_url: str, stored: list[dict[str, Any]]) -> list[Violation]:
    replies = {
        str(m["_id"]): m for m in stored if m.get("role") == "assistant" and m.get("generation") is not None
    }
    if not replies:
        return []
    conn = await asyncpg.connect(users_url, timeout=30)
    try:
        rows = await conn.fetch(
            """SELECT id, reference, status, committed_amount FROM users.credit_reservation
               WHERE reference = ANY($1::text[])""",
            [f"message-service reply {reply_id}" for reply_id in replies],
        )
    finally:
        await conn.close()
    by_reply: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_reply[row["reference"].rsplit(" ", 1)[-1]].append(row)
    violations = []
    for reply_id, reply in replies.items():
        generation = reply["generation"]
        reservations = {str(r["id"]): r for r in by_reply[reply_id]}
        charged = sum(r["committed_amount"] or 0 for r in reservations.values() if r["status"] == "committed")
        spent = int(generation.get("spent") or 0)
        last = reservations.get(str(generation.get("reservation_id")))
        if generation.get("reservation_id") and last is None:
            violations.append(Violation("charge", reply_id, "its reservation is unknown to user-service"))
            continue
        pending = generation.get("credits") in ("reserved", "commit_pending")
        if pending and last is not None and last["status"] == "held":
            spent -= int(generation.get("cost") or 0)  # its last charge is still to be made
        if charged != spent:
            detail = f"{reply['status']} reply spent {spent} but its reservations were charged {charged}"
            violations.append(Violation("charge", reply_id, detail))
        committed = last is not None and (last["status"], last["committed_amount"]) == (
            "committed",
            generation.get("cost"),
        )
        if generation.get("credits") == "committed" and last is not None and not committed:
            detail = (
                f"committed for {generation.get('cost')} but its reservation is {last['status']} "
                f"for {last['committed_amount']}"
            )
            violations.append(Violation("charge", reply_id, detail))
    return violations


def _check_counts(live: list[dict[str, Any]], stored: list[dict[str, Any]]) -> list[Violation]:
    counts: dict[str, int] = defaultdict(int)
    for message in stored:
        if not _is_greeting(message):
            counts[message["conversation_id"]] += 1
    violations = []
    for conversation in live:
        subject = str(conversation["_id"])
        if conversation.get("message_count", 0) != counts[subject]:
            detail = f"message_count {conversation.get('message_count', 0)} but {counts[subject]} stored"
            violations.append(Violation("message_count", subject, detail))
    return violations
