"""Live chat traffic for the fault scenarios: a few users sending streamed and plain messages at once,
each recording what it saw (status, error code, the dependency the error names) and which of its
messages the fleet accepted, and a scenario runner that injects a fault during it, recovers, and
measures how long the fleet takes to serve again and to settle its books."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import httpx

from chat_common.testing.fleet import FleetUser
from chat_common.testing.invariants import Violation
from tests.faults.conftest import Fleet

DEPENDENCY_STATUSES = (502, 503, 504)


@dataclass
class Outcome:
    """One send as its client saw it."""

    kind: str  # "plain" or "stream"
    started: float  # time.monotonic()
    ended: float = 0.0
    status: int = 0  # HTTP status; 0: no answer at all (the connection failed)
    code: str | None = None  # the error's code (an SSE `error` event's for a stream)
    service: str | None = None  # the dependency the error names (`details.service`)
    message: str = ""
    user_message_id: str | None = None  # accepted: the fleet stored it
    reply_status: str | None = None  # completed, stopped, failed (from the end of a reply)
    reply_id: str | None = None
    reattached: bool = False  # its stream broke and the client read the reply's end again

    @property
    def ok(self) -> bool:
        return self.reply_status == "completed" and self.code is None

    def describe(self) -> str:
        kind = f"{self.kind} (broken, re-attached)" if self.reattached else self.kind
        if self.ok:
            return f"{kind} {self.status} completed"
        return f"{kind} {self.status} {self.code} ({self.service}): {self.message[:120]}"


@dataclass
class Client:
    user: FleetUser
    conversation_id: str
    outcomes: list[Outcome] = field(default_factory=list)
    deletes: list[Outcome] = field(default_factory=list)  # kind "delete"; `reply_id`: what it deleted
    deleted_user_messages: list[str] = field(default_factory=list)  # accepted, then deleted (204)


def _error_of(body: Any) -> dict[str, Any]:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return error
    return body if isinstance(body, dict) else {}


def _note_error(outcome: Outcome, error: dict[str, Any]) -> None:
    details = error.get("details") if isinstance(error.get("details"), dict) else {}
    outcome.code = error.get("code") or "unknown"
    outcome.service = details.get("service")
    outcome.message = str(error.get("message", ""))
    outcome.user_message_id = outcome.user_message_id or details.get("user_message_id")


async def send_plain(http: httpx.AsyncClient, client: Client, content: str) -> Outcome:
    outcome = Outcome("plain", time.monotonic())
    try:
        response = await http.post(
            f"/api/v1/conversations/{client.conversation_id}/messages",
            json={"content": content},
            headers=client.user.headers,
        )
    except httpx.HTTPError as exc:
        outcome.code, outcome.message = "no_answer", repr(exc)
    else:
        outcome.status = response.status_code
        body = response.json()
        if response.status_code == 201:
            outcome.user_message_id = body["user_message"]["id"]
            outcome.reply_status = body["reply"]["status"]
        else:
            _note_error(outcome, _error_of(body))
    outcome.ended = time.monotonic()
    client.outcomes.append(outcome)
    return outcome


async def send_streamed(http: httpx.AsyncClient, client: Client, content: str) -> Outcome:
    outcome = Outcome("stream", time.monotonic())
    try:
        async with http.stream(
            "POST",
            f"/api/v1/conversations/{client.conversation_id}/messages",
            json={"content": content, "stream": True},
            headers=client.user.headers,
        ) as response:
            outcome.status = response.status_code
            if response.status_code != 200:
                _note_error(outcome, _error_of(json.loads(await response.aread())))
            else:
                async for name, data in _events(response):
                    _note_event(outcome, name, data)
    except httpx.HTTPError as exc:
        outcome.code, outcome.message = outcome.code or "no_answer", repr(exc)
        if outcome.reply_id is not None:  # the stream broke: re-attach to the reply, as a client does
            await _reattach(http, client, outcome)
    outcome.ended = time.monotonic()
    client.outcomes.append(outcome)
    return outcome


async def delete_message(http: httpx.AsyncClient, client: Client, message_id: str) -> Outcome:
    """Delete a message (and what is below it) as its owner: 204, or an error naming a dependency."""
    outcome = Outcome("delete", time.monotonic(), reply_id=message_id)
    try:
        response = await http.delete(f"/api/v1/messages/{message_id}", headers=client.user.headers)
    except httpx.HTTPError as exc:
        outcome.code, outcome.message = "no_answer", repr(exc)
    else:
        outcome.status = response.status_code
        if response.status_code != 204:
            _note_error(outcome, _error_of(response.json()))
    outcome.ended = time.monotonic()
    client.deletes.append(outcome)
    return outcome


async def _reattach(http: httpx.AsyncClient, client: Client, outcome: Outcome, within: float = 30) -> None:
    """Read the reply's events again from `GET /messages/{id}/stream` (any replica, or the restarted
    process) until its end, retrying while message-service does not answer."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):  # message-service not back yet: tried again
            async with http.stream(
                "GET", f"/api/v1/messages/{outcome.reply_id}/stream", headers=client.user.headers
            ) as response:
                if response.status_code == 200:
                    outcome.status, outcome.code, outcome.message = 200, None, ""
                    async for name, data in _events(response):
                        _note_event(outcome, name, data)
                    outcome.reattached = True
                    return
        await asyncio.sleep(0.3)


def _note_event(outcome: Outcome, name: str, data: dict[str, Any]) -> None:
    if name == "message.created":
        outcome.reply_id = data.get("reply_id")
        if data.get("user_message"):
            outcome.user_message_id = data["user_message"]["id"]
    elif name == "message.completed":
        outcome.reply_status = data.get("status")
    elif name == "error":
        outcome.reply_status = "failed"
        _note_error(outcome, data)


async def _events(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    name, data = "message", []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


@dataclass
class Report:
    """What a scenario's clients saw, and how long the fleet took to come back."""

    name: str
    outcomes: list[Outcome]  # every send of the scenario
    during: list[Outcome]  # sends started while the fault was on
    after: list[Outcome]  # sends started after it was lifted
    lifting: float  # seconds lifting the fault took (a service or backend started again and ready)
    served_again: float  # seconds from the fault lifted to the next completed reply
    settled: float  # seconds from the fault lifted until the invariants held
    violations: list[Violation]
    accepted: list[str]  # user messages the fleet accepted and the clients did not delete
    deletes: list[Outcome] = field(default_factory=list)  # started while the fault was on

    def seen(self) -> list[str]:
        """What the clients saw during the fault, each kind once, most frequent first."""
        counts: dict[str, int] = {}
        for outcome in self.during:
            key = outcome.describe()
            counts[key] = counts.get(key, 0) + 1
        return [f"{n}x {key}" for key, n in sorted(counts.items(), key=lambda kv: -kv[1])]


RESULTS: list[Report] = []  # printed at the end of the session (conftest's terminal summary)


class Traffic:
    """`clients` users, each in its own conversation, sending (streamed and plain in turn) until
    stopped, one message at a time each."""

    def __init__(
        self,
        fleet: Fleet,
        clients: list[Client],
        content: Callable[[int], str],
        *,
        streamed_only: bool = False,
        deleting: bool = False,
    ) -> None:
        self.fleet = fleet
        self.clients = clients
        self.content = content
        self.streamed_only = streamed_only
        self.deleting = deleting
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Traffic:
        self._tasks = [
            asyncio.ensure_future(self._run(client, index)) for index, client in enumerate(self.clients)
        ]
        return self

    async def __aexit__(self, *_: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _run(self, client: Client, index: int) -> None:
        url = self.fleet.url("message-service")
        async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(30, connect=5)) as http:
            turn = index
            while not self._stop.is_set():
                send = send_streamed if turn % 2 == 0 or self.streamed_only else send_plain
                outcome = await send(http, client, self.content(turn))
                turn += 1
                if self.deleting and outcome.ok and turn % 3 == 0:
                    await self._delete(http, client, outcome, whole=turn % 2 == 0)
                if not outcome.ok:  # the fleet is in trouble: do not hammer it
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), 0.3)

    @staticmethod
    async def _delete(http: httpx.AsyncClient, client: Client, sent: Outcome, *, whole: bool) -> None:
        """Delete the reply just read, or (`whole`) the user message and its reply with it."""
        target = sent.user_message_id if whole else sent.reply_id
        if target is None:
            return
        deleted = await delete_message(http, client, target)
        if deleted.status == 204 and whole:
            client.deleted_user_messages.append(target)

    @property
    def outcomes(self) -> list[Outcome]:
        return [o for client in self.clients for o in client.outcomes]

    async def served_since(self, since: float, within: float) -> float:
        """Seconds from `since` until a send started after it completed (fails past `within`)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            done = [o for o in self.outcomes if o.started >= since and o.ok]
            if done:
                return min(o.ended for o in done) - since
            await asyncio.sleep(0.1)
        seen = [o.describe() for o in self.outcomes if o.started >= since]
        raise AssertionError(f"no reply completed within {within}s of recovery; clients saw {seen[-10:]}")


def fault(
    on: Callable[[], object], off: Callable[[], object]
) -> Callable[[], AbstractAsyncContextManager[None]]:
    """A fault for `run_scenario`: `on()` injects it, `off()` lifts it (both blocking: run in a thread)."""

    @contextlib.asynccontextmanager
    async def injected() -> AsyncIterator[None]:
        await asyncio.to_thread(on)
        try:
            yield
        finally:
            await asyncio.to_thread(off)

    return injected


async def until(condition: Callable[[], bool], within: float, step: float = 0.1) -> None:
    """Wait until `condition()` holds (fails past `within` seconds)."""
    for _ in range(int(within / step)):
        if condition():
            return
        await asyncio.sleep(step)
    raise AssertionError(f"still not so after {within}s")


async def make_clients(fleet: Fleet, count: int) -> list[Client]:
    def one() -> Client:
        user = fleet.register()
        character = fleet.character(user)
        return Client(user, fleet.conversation(user, character["id"])["id"])

    return list(await asyncio.gather(*(asyncio.to_thread(one) for _ in range(count))))


async def run_scenario(
    fleet: Fleet,
    name: str,
    fault: Callable[[], AbstractAsyncContextManager[None]],
    *,
    clients: int = 3,
    fault_seconds: float = 4.0,
    content: Callable[[int], str] = lambda turn: f"Message {turn}: how is the weather up there?",
    recover_within: float = 60.0,
    streamed_only: bool = False,
    deleting: bool = False,
) -> Report:
    """Traffic (`deleting`: every third exchange's reply, or the whole exchange, deleted after it), then
    `fault` on for `fault_seconds` (at least until one send started under it ended), then lifted;
    traffic until a reply completes again; then the invariants, until they hold."""
    people = await make_clients(fleet, clients)
    async with Traffic(fleet, people, content, streamed_only=streamed_only, deleting=deleting) as traffic:
        await traffic.served_since(time.monotonic(), 60)  # the fleet serves before the fault
        async with fault():
            fault_on = time.monotonic()
            await asyncio.sleep(fault_seconds)
            await until(lambda: any(o.started >= fault_on and o.ended for o in traffic.outcomes), 60)
            fault_off_requested = time.monotonic()
        lifted = time.monotonic()
        served_again = await traffic.served_since(lifted, recover_within)
    outcomes = traffic.outcomes
    deleted = {message_id for client in people for message_id in client.deleted_user_messages}
    accepted = [o.user_message_id for o in outcomes if o.user_message_id and o.user_message_id not in deleted]
    _, violations = await asyncio.to_thread(
        fleet.wait_for_invariants, [c.user.id for c in people], accepted, within=recover_within
    )
    report = Report(
        name=name,
        outcomes=outcomes,
        during=[o for o in outcomes if fault_on <= o.started < fault_off_requested],
        after=[o for o in outcomes if o.started >= lifted],
        lifting=lifted - fault_off_requested,
        served_again=served_again,
        settled=time.monotonic() - lifted,
        violations=violations,
        accepted=accepted,
        deletes=[
            d for client in people for d in client.deletes if fault_on <= d.started < fault_off_requested
        ],
    )
    RESULTS.append(report)
    return report
