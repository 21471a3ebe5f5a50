"""The fleet's own services failing during live chat traffic: character-service and
conversation-service down, user-service killed between replies' generation and their charge,
message-service killed mid-generation. Clients see an error naming the dependency (or, for a killed
message-service, a broken stream they re-attach to), and afterwards the books hold."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Any

import httpx
from pymongo import MongoClient

from tests.faults.conftest import INITIAL_CREDITS, ORPHANED_RESERVATION_GRACE_SECONDS, Fleet
from tests.faults.test_lmstudio import assert_failed_naming
from tests.faults.traffic import fault, run_scenario


async def test_character_service_down(fleet: Fleet) -> None:
    service = fleet.services["character-service"]
    report = await run_scenario(fleet, "character-service down", fault(service.stop, service.start))
    assert_failed_naming(report, "character-service", {"dependency_unavailable"})


async def test_conversation_service_down(fleet: Fleet) -> None:
    """With users deleting messages too: a delete during the outage is a 503 naming conversation-service
    (or done, its count told later), and afterwards every conversation's count equals what is stored."""
    service = fleet.services["conversation-service"]
    report = await run_scenario(
        fleet, "conversation-service down", fault(service.stop, service.start), deleting=True
    )
    assert_failed_naming(report, "conversation-service", {"dependency_unavailable"})
    for deleted in report.deletes:
        assert deleted.status == 204 or (deleted.status, deleted.service) == (503, "conversation-service"), (
            deleted.describe()
        )


def _replies(fleet: Fleet, query: dict[str, Any]) -> list[dict[str, Any]]:
    """This test's messages (created since it began) matching `query`."""
    since = {"created_at": {"$gte": int(fleet.test_started * 1000)}}
    with MongoClient(fleet.databases.mongodb_url) as client:
        return list(client[fleet.databases.messages_database]["messages"].find({**query, **since}))


def _until(condition: Any, within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"still not so after {within}s"
        time.sleep(0.1)


async def test_user_service_killed_between_generation_and_charge(fleet: Fleet) -> None:
    """user-service SIGKILLed while replies generate: they complete with their charge pending, which
    survives a SIGKILL and restart of message-service, and is made exactly once when user-service
    returns (never released as if the reply had failed)."""
    users, messages = fleet.services["user-service"], fleet.services["message-service"]
    pending: list[dict[str, Any]] = []

    def on() -> None:
        fleet.standin.configure(tokens_per_second=8)
        _until(lambda: _replies(fleet, {"status": "generating"}), 30)
        users.kill()
        # the replies generating finish while user-service is away: their commits cannot be made
        _until(lambda: not _replies(fleet, {"status": "generating"}), 30)
        pending.extend(_replies(fleet, {"generation.credits": "commit_pending"}))
        messages.kill()
        messages.start()  # user-service is still away: the pending charges must survive this

    def off() -> None:
        fleet.standin.reset()
        users.start()

    report = await run_scenario(fleet, "user-service killed between generation and charge", fault(on, off))

    assert pending, "no reply was left with its charge pending"
    ids = [reply["_id"] for reply in pending]
    settled = _replies(fleet, {"_id": {"$in": ids}})
    assert {r["status"] for r in settled} == {"completed"}
    assert {r["generation"]["credits"] for r in settled} == {"committed"}
    assert_failed_naming(report, "user-service", {"auth_unavailable", "dependency_unavailable"})


async def test_message_service_killed_mid_generation(fleet: Fleet) -> None:
    """message-service SIGKILLed while replies generate, then started again: the replies it was
    generating are failed `generation_lost` by the sweeper once their leases expire, and their
    reservations released; clients in flight lose their connection (a streamed one may re-attach and
    read the `error` event), nobody gets a 5xx of a half-done request. A send killed after reserving
    its reply's credits but before storing the reply (here: character-service hung meanwhile) has its
    reservation released by the restarted sweeper after ORPHANED_RESERVATION_GRACE_SECONDS, not at the
    reservation's TTL (an hour)."""
    messages, characters = fleet.services["message-service"], fleet.services["character-service"]
    killed: list[dict[str, Any]] = []
    lost = fleet.register("orphan")
    lost_conversation = fleet.conversation(lost, fleet.character(lost)["id"])

    def balance() -> int:
        response = fleet.http.get(f"{fleet.url('user-service')}/api/v1/credits", headers=lost.headers)
        return int(response.json()["balance"])

    def send_lost() -> None:
        with contextlib.suppress(httpx.HTTPError):  # its process is killed under it
            fleet.http.post(
                f"{fleet.url('message-service')}/api/v1/conversations/{lost_conversation['id']}/messages",
                json={"content": "Hello?"},
                headers=lost.headers,
            )

    def on() -> None:
        # slow enough that the replies generating now still are when it is killed, seconds later
        fleet.standin.configure(tokens_per_second=1)
        _until(lambda: _replies(fleet, {"status": "generating"}), 30)
        characters.freeze()  # a send reserves while it reads the character: it stops there
        try:
            sending = threading.Thread(target=send_lost)
            sending.start()
            _until(lambda: balance() < INITIAL_CREDITS, 2.5)  # reserved, nothing stored yet
            messages.kill(signal.SIGKILL)
        finally:
            characters.thaw()
        sending.join(10)
        killed.extend(_replies(fleet, {"status": "generating"}))

    def off() -> None:
        fleet.standin.reset()
        messages.start()

    report = await run_scenario(
        fleet, "message-service killed mid-generation", fault(on, off), fault_seconds=1
    )

    assert killed
    ended = _replies(fleet, {"_id": {"$in": [reply["_id"] for reply in killed]}})
    assert {r["status"] for r in ended} == {"failed"}
    assert {r["generation"]["error_code"] for r in ended} == {"generation_lost"}
    assert {r["generation"]["credits"] for r in ended} == {"released"}
    for outcome in report.during:
        assert outcome.ok or outcome.code in ("no_answer", "generation_lost"), outcome.describe()
    assert report.violations == [], [str(v) for v in report.violations]
    assert not _replies(fleet, {"conversation_id": lost_conversation["id"], "role": "user"})  # never stored
    _until(lambda: balance() == INITIAL_CREDITS, ORPHANED_RESERVATION_GRACE_SECONDS + 10)
