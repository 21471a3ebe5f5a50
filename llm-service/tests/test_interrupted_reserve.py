"""A reserve interrupted before llm-service learns its answer leaves nothing held: the client leaving
mid-reserve, or user-service answering after llm-service's read timeout. user-service is a real
process; it is made slow either by holding the user's row at its PostgreSQL (its reserve statement
waits: user-service has read the request and carries it out once the row is free) or by SIGSTOP."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from app.main import create_app
from chat_common.testing import ServiceProcess, create_database, serve_app
from chat_common.testing.fleet import run_sync
from lmstudio_client.testing import StandinProcess
from tests.conftest import INITIAL_CREDITS, chat_body, make_settings, register, run_user_service
from tests.test_billing import RESERVED, STORY, STORY_COST, ledger_moves

T = TypeVar("T")

DEADLINE = 45.0  # seconds: generous, the machine is shared; the release is polled, never timed


@dataclass
class UserService:
    process: ServiceProcess
    database_url: str

    @property
    def url(self) -> str:
        return self.process.url


@pytest.fixture(scope="module")
def users(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[UserService]:
    """user-service on a database these tests can read and lock (and a process they can stop)."""
    database_url = run_sync(create_database(postgres_url, "users"))
    data_dir = tmp_path_factory.mktemp("interrupted-reserve-user-service")
    with run_user_service(postgres_url, redis_url, data_dir, database_url) as process:
        yield UserService(process, database_url)


async def eventually(condition: Callable[[], Awaitable[bool]], within: float = DEADLINE) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def until_equal(read: Callable[[], Awaitable[T]], expected: T, within: float = DEADLINE) -> None:
    deadline = time.monotonic() + within
    while (value := await read()) != expected:
        assert time.monotonic() < deadline, f"still {value!r}, not {expected!r}"
        await asyncio.sleep(0.1)


async def reservations(database_url: str, user_id: str) -> list[tuple[str, int]]:
    """(status, amount) of the user's reservations, as user-service's PostgreSQL holds them."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT status, amount FROM users.credit_reservation WHERE user_id = $1 ORDER BY created_at",
            uuid.UUID(user_id),
        )
    finally:
        await conn.close()
    return [(row["status"], row["amount"]) for row in rows]


async def statements_waiting_on_a_lock(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    finally:
        await conn.close()
    return int(count)


@asynccontextmanager
async def user_row_held(database_url: str, user_id: str) -> AsyncIterator[None]:
    """While the block runs, user-service's reserve for this user waits at PostgreSQL."""
    conn = await asyncpg.connect(database_url)
    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute('SELECT 1 FROM users."user" WHERE id = $1 FOR UPDATE', uuid.UUID(user_id))
        yield
    finally:
        await transaction.rollback()
        await conn.close()


def left_early(llm_url: str) -> float:
    """How many chat completions llm-service answered with a 4xx (a client that left gets 499)."""
    metrics = httpx.get(f"{llm_url}/metrics", timeout=10).text
    pattern = re.compile(
        r'^http_requests_total\{[^}]*handler="/api/v1/chat/completions"[^}]*status="4xx"[^}]*\} (\S+)$'
    )
    return sum(float(m.group(1)) for line in metrics.splitlines() if (m := pattern.match(line)))


async def send_and_stay(llm_url: str, token: str, body: dict[str, object]) -> asyncio.StreamWriter:
    """A raw client that sends a whole paid request and does not read the answer."""
    address = urlsplit(llm_url)
    _, writer = await asyncio.open_connection(address.hostname, address.port)
    data = json.dumps(body).encode()
    head = (
        f"POST /api/v1/chat/completions HTTP/1.1\r\nHost: {address.netloc}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    writer.write(head.encode() + data)
    await writer.drain()
    return writer


async def test_a_client_that_leaves_while_its_credits_are_reserved_gets_them_back(
    standin: StandinProcess, users: UserService
) -> None:
    account = register(users.url)
    with serve_app(create_app(make_settings(standin.url, users.url))) as llm:
        async with user_row_held(users.database_url, account.id):
            writer = await send_and_stay(llm, account.token, chat_body(STORY))
            # user-service has the reserve and carries it out: its statement waits for the row
            await until_equal(lambda: statements_waiting_on_a_lock(users.database_url), 1)
            writer.close()  # the client leaves before llm-service learns the reservation
            await eventually(lambda: _true(left_early(llm) == 1))
        # the row is free: user-service commits the hold, which llm-service must give back
        await until_equal(lambda: reservations(users.database_url, account.id), [("released", RESERVED)])
    assert ledger_moves(account) == [
        ("signup_bonus", INITIAL_CREDITS),
        ("reservation", -RESERVED),
        ("released", RESERVED),
    ]
    assert account.balance() == INITIAL_CREDITS
    assert standin.stats()["requests"] == 0


async def test_a_reserve_answered_after_the_read_timeout_is_504_and_given_back(
    standin: StandinProcess, users: UserService
) -> None:
    account = register(users.url)
    settings = make_settings(standin.url, users.url, credits_timeout_seconds=1.0)
    with serve_app(create_app(settings)) as llm:
        async with (
            httpx.AsyncClient(base_url=llm, headers=account.headers, timeout=60) as http,
            user_row_held(users.database_url, account.id),
        ):
            response = await http.post("/api/v1/chat/completions", json=chat_body(STORY))
        _assert_user_service_timeout(response)
        await until_equal(lambda: reservations(users.database_url, account.id), [("released", RESERVED)])
    assert ledger_moves(account)[1:] == [("reservation", -RESERVED), ("released", RESERVED)]
    assert account.balance() == INITIAL_CREDITS
    assert standin.stats()["requests"] == 0


async def test_user_service_stopped_past_the_read_timeout_holds_nothing_afterwards(
    standin: StandinProcess, users: UserService
) -> None:
    account = register(users.url)
    settings = make_settings(standin.url, users.url, credits_timeout_seconds=1.0)
    with serve_app(create_app(settings)) as llm:
        async with httpx.AsyncClient(base_url=llm, headers=account.headers, timeout=60) as http:
            # a paid call first: llm-service has user-service's keys and its service token
            assert (await http.post("/api/v1/chat/completions", json=chat_body(STORY))).status_code == 200
            pid = users.process.process.pid
            os.kill(pid, signal.SIGSTOP)
            try:
                response = await http.post("/api/v1/chat/completions", json=chat_body(STORY))
                await asyncio.sleep(0.5)  # stopped a little past the timeout too
            finally:
                os.kill(pid, signal.SIGCONT)
        _assert_user_service_timeout(response)

        # the reserve's answer was lost: sent again with the same key, it names one reservation, released
        expected = [("committed", RESERVED), ("released", RESERVED)]
        await until_equal(lambda: reservations(users.database_url, account.id), expected)
    assert ledger_moves(account) == [
        ("signup_bonus", INITIAL_CREDITS),
        ("reservation", -RESERVED),
        ("refund", RESERVED - STORY_COST),
        ("reservation", -RESERVED),
        ("released", RESERVED),
    ]
    assert account.balance() == INITIAL_CREDITS - STORY_COST
    assert standin.stats()["requests"] == 1


def _assert_user_service_timeout(response: httpx.Response) -> None:
    assert response.status_code == 504, response.text
    error = response.json()["error"]
    assert error["code"] == "dependency_timeout" and error["details"]["service"] == "user-service"


async def _true(value: bool) -> bool:
    return value
