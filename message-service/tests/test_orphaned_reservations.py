"""A reservation made for a reply that was never stored (the process killed between reserving and
storing it) is released by the sweeper once past ORPHANED_RESERVATION_GRACE_SECONDS, not held until its
TTL; a stored reply's reservation, a younger one and another kind of key are left alone, and a send
too slow to store its reply within half the grace gives up rather than race the sweeper."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from bson import ObjectId

from app.services import prompting
from chat_common.testing.fleet import FleetUser
from lmstudio_client.testing import StandinProcess
from tests.conftest import Fleet
from tests.test_jobs import LONG, reply_ledger, start_streamed, wait_for_status, wait_until

GRACE = 3


def status(fleet: Fleet, reservation: dict[str, Any]) -> str:
    return str(fleet.reservation(reservation["id"])["status"])


async def test_a_reservation_whose_reply_was_never_stored_is_released_after_the_grace_and_no_other(
    app: Any,
    client: httpx.AsyncClient,
    fleet: Fleet,
    alice: FleetUser,
    standin: StandinProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    standin.configure(tokens_per_second=4)  # the stored reply generates for about 10 s
    conversation = fleet.conversation(alice)
    before = fleet.balance(alice)
    reply_id, _ = await start_streamed(client, alice, conversation["id"], LONG, until=1)
    stored = next(r for r in reply_ledger(fleet, alice, reply_id) if r["kind"] == "reservation")
    monkeypatch.setattr(app.state.runtime.settings, "orphaned_reservation_grace_seconds", GRACE)

    lost_reply = fleet.reserve(alice, f"reply:{ObjectId()}", 7)
    lost_continuation = fleet.reserve(alice, f"continue:{reply_id}:{uuid.uuid4().hex}", 5)
    other_kind = fleet.reserve(alice, f"impersonate:{uuid.uuid4().hex}", 3)
    await asyncio.sleep(GRACE / 2)
    younger = fleet.reserve(alice, f"reply:{ObjectId()}", 2)  # a send still on its way to store it

    await wait_until(lambda: status(fleet, lost_reply) == "released", within=GRACE + 5)
    assert status(fleet, younger) == "held"
    await wait_until(lambda: status(fleet, lost_continuation) == "released", within=5)
    assert status(fleet, other_kind) == "held"
    assert fleet.reservation(stored["reservation_id"])["status"] == "held"
    await wait_until(lambda: status(fleet, younger) == "released", within=GRACE + 5)
    assert status(fleet, other_kind) == "held"

    reply = await wait_for_status(client, alice, reply_id, within=30)
    assert reply["status"] == "completed"
    assert fleet.reservation(stored["reservation_id"])["status"] == "committed"
    fleet.release(other_kind["id"])
    assert fleet.balance(alice) == before - reply["generation"]["cost"]


async def test_a_send_that_cannot_store_its_reply_within_half_the_grace_gives_up_and_releases(
    app: Any, client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    conversation = fleet.conversation(alice)
    before = fleet.balance(alice)
    listed = f"/api/v1/conversations/{conversation['id']}/messages"
    stored_before = (await client.get(listed, headers=alice.headers)).json()["items"]
    monkeypatch.setattr(app.state.runtime.settings, "orphaned_reservation_grace_seconds", 2)
    build = prompting.payload

    async def slow(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(1.2)  # past half the grace, by which the reply must be stored
        return await build(*args, **kwargs)

    monkeypatch.setattr(prompting, "payload", slow)
    started = time.monotonic()

    response = await client.post(listed, json={"content": "Hello?"}, headers=alice.headers)

    assert response.status_code == 503, response.text
    assert time.monotonic() - started < 5
    assert fleet.balance(alice) == before
    assert (await client.get(listed, headers=alice.headers)).json()["items"] == stored_before
    rows = fleet.ledger(alice)
    assert [r["kind"] for r in rows[:2]] == ["released", "reservation"]
