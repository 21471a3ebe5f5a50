"""A failing backend is a 503 naming it, never a 500; a reservation cut off half-way charges nothing."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import asyncpg
from fastapi import FastAPI
from httpx import AsyncClient

from app.config import Settings
from app.models.base import Base
from app.repositories.rate_limits import LoginLimiter
from chat_common.database import DatabaseSettings, create_engine, create_sessionmaker
from chat_common.embedded import free_port
from tests.conftest import UserFactory, assert_error_shape

SCHEMA = Base.metadata.schema


@contextmanager
def postgres_down(app: FastAPI, attribute: str) -> Iterator[None]:
    """Point one of the app's session factories at a port where no PostgreSQL listens."""
    dead = DatabaseSettings(database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    saved = getattr(app.state, attribute)
    setattr(app.state, attribute, create_sessionmaker(create_engine(dead)))
    try:
        yield
    finally:
        setattr(app.state, attribute, saved)


async def test_postgres_down_during_a_read_is_503_naming_it(
    app: FastAPI, client: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    with postgres_down(app, "read_sessionmaker"):
        response = await client.get("/api/v1/users/me", headers=user.headers)
    assert response.status_code == 503
    assert_error_shape(response.json(), "dependency_unavailable")
    assert response.json()["error"]["details"] == {"service": "postgres"}


async def test_postgres_down_during_a_reservation_is_503_naming_it(
    app: FastAPI, client: AsyncClient, make_user: UserFactory, service_headers: dict[str, str]
) -> None:
    user = await make_user()
    with postgres_down(app, "sessionmaker"), postgres_down(app, "read_sessionmaker"):
        response = await client.post(
            "/api/v1/credits/reservations",
            json={"user_id": user.id, "amount": 5, "idempotency_key": "outage"},
            headers=service_headers,
        )
    assert response.status_code == 503
    assert_error_shape(response.json(), "dependency_unavailable")
    assert response.json()["error"]["details"] == {"service": "postgres"}


STALL_LEDGER = """
CREATE OR REPLACE FUNCTION {schema}.stall_ledger_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Tell the test (through pg_stat_activity) the balance this reservation has just written, then wait.
    PERFORM set_config('application_name', 'stalled-ledger ' || NEW.balance_after, false);
    PERFORM pg_sleep(120);
    RETURN NEW;
END $$;
CREATE TRIGGER stall_ledger BEFORE INSERT ON {schema}.credit_transaction
    FOR EACH ROW WHEN (NEW.reference = '{reference}' AND NEW.kind = '{kind}')
    EXECUTE FUNCTION {schema}.stall_ledger_insert();
"""


@asynccontextmanager
async def ledger_insert_stalls(
    database_url: str, reference: str, kind: str = "reservation"
) -> AsyncIterator[asyncpg.Connection]:
    """A trigger that stops a ledger INSERT of this kind and reference, after the balance UPDATE of the
    same statement has run, until the test kills the backend; yields a separate connection."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(STALL_LEDGER.format(schema=SCHEMA, reference=reference, kind=kind))
        yield conn
    finally:
        await conn.execute(  # a failed assertion must not leave a backend asleep holding the user's row
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name LIKE 'stalled-ledger %'"
        )
        await conn.execute(f"DROP TRIGGER IF EXISTS stall_ledger ON {SCHEMA}.credit_transaction")
        await conn.execute(f"DROP FUNCTION IF EXISTS {SCHEMA}.stall_ledger_insert()")
        await conn.close()


async def _stalled_backend(conn: asyncpg.Connection) -> tuple[int, int]:
    """(pid, balance it wrote) of the backend waiting inside the trigger."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        row = await conn.fetchrow(
            "SELECT pid, application_name FROM pg_stat_activity"
            " WHERE application_name LIKE 'stalled-ledger %'"
        )
        if row is not None:
            return int(row["pid"]), int(row["application_name"].split()[1])
        await asyncio.sleep(0.05)
    raise AssertionError("the reservation never reached the ledger insert")


async def test_connection_killed_between_balance_update_and_ledger_row_charges_nothing(
    app: FastAPI,
    client: AsyncClient,
    settings: Settings,
    make_user: UserFactory,
    service_headers: dict[str, str],
) -> None:
    """The reservation's backend is killed (pg_terminate_backend) after it has lowered the balance
    and before its ledger row exists: the client gets a 503 and balance and ledger still agree."""
    user = await make_user()
    reference = f"stall-{uuid.uuid4().hex}"
    body = {"user_id": user.id, "amount": 5, "idempotency_key": reference, "reference": reference}
    async with ledger_insert_stalls(settings.database_url, reference) as conn:
        request = asyncio.create_task(
            client.post("/api/v1/credits/reservations", json=body, headers=service_headers)
        )
        pid, written = await _stalled_backend(conn)
        assert written == 95  # the balance UPDATE ran inside the stalled reservation
        assert (
            await conn.fetchval(f'SELECT credits FROM {SCHEMA}."user" WHERE id = $1', uuid.UUID(user.id))
            == 100
        )
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid) is True
        response = await asyncio.wait_for(request, timeout=60)
        assert response.status_code == 503, response.text
        assert_error_shape(response.json(), "dependency_unavailable")
        user_id = uuid.UUID(user.id)
        balance = await conn.fetchval(f'SELECT credits FROM {SCHEMA}."user" WHERE id = $1', user_id)
        ledger = await conn.fetchval(
            f"SELECT sum(amount) FROM {SCHEMA}.credit_transaction WHERE user_id = $1", user_id
        )
        held = await conn.fetchval(
            f"SELECT count(*) FROM {SCHEMA}.credit_reservation WHERE user_id = $1", user_id
        )
    assert (balance, ledger, held) == (100, 100, 0)
    # The service recovers at once, and the same key reserves afresh (nothing was kept under it).
    retried = await client.post("/api/v1/credits/reservations", json=body, headers=service_headers)
    assert retried.status_code == 201, retried.text
    assert (await client.get("/api/v1/credits", headers=user.headers)).json()["balance"] == 95


async def test_redis_down_at_login_is_503_naming_it(app: FastAPI, client: AsyncClient) -> None:
    auth = app.state.auth
    saved = auth.limiter
    auth.limiter = LoginLimiter(
        f"redis://127.0.0.1:{free_port()}/0", prefix="x", per_account="5/minute", per_ip="30/minute"
    )
    try:
        response = await client.post(
            "/api/v1/auth/token", data={"username": "someone", "password": "Pass-word-1"}
        )
    finally:
        auth.limiter = saved
    assert response.status_code == 503
    assert_error_shape(response.json(), "dependency_unavailable")
    assert response.json()["error"]["details"] == {"service": "redis"}


async def test_connection_killed_between_refund_and_its_ledger_row_leaves_the_reservation_held(
    app: FastAPI,
    client: AsyncClient,
    settings: Settings,
    make_user: UserFactory,
    service_headers: dict[str, str],
) -> None:
    """A commit killed after it settled the reservation and refunded the rest, before the refund's
    ledger row: nothing of it stays, and the retried commit settles it once."""
    user = await make_user()
    reference = f"stall-{uuid.uuid4().hex}"
    body = {"user_id": user.id, "amount": 10, "idempotency_key": reference, "reference": reference}
    reserved = await client.post("/api/v1/credits/reservations", json=body, headers=service_headers)
    assert reserved.status_code == 201
    url = f"/api/v1/credits/reservations/{reserved.json()['id']}"
    user_id = uuid.UUID(user.id)
    async with ledger_insert_stalls(settings.database_url, reference, kind="refund") as conn:
        request = asyncio.create_task(
            client.post(f"{url}/commit", json={"amount": 4}, headers=service_headers)
        )
        pid, written = await _stalled_backend(conn)
        assert written == 96  # the refund of 6 was added to the balance inside the stalled commit
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid) is True
        response = await asyncio.wait_for(request, timeout=60)
        assert response.status_code == 503, response.text
        balance = await conn.fetchval(f'SELECT credits FROM {SCHEMA}."user" WHERE id = $1', user_id)
        ledger = await conn.fetchval(
            f"SELECT sum(amount) FROM {SCHEMA}.credit_transaction WHERE user_id = $1", user_id
        )
    assert (balance, ledger) == (90, 90)
    assert (await client.get(url, headers=service_headers)).json()["status"] == "held"
    retried = await client.post(f"{url}/commit", json={"amount": 4}, headers=service_headers)
    assert retried.status_code == 200 and retried.json()["committed_amount"] == 4
    assert (await client.get("/api/v1/credits", headers=user.headers)).json()["balance"] == 96
