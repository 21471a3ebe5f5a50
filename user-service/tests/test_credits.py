"""Credits: balance, ledger, admin adjustments and service reservations under concurrency."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from pydantic import SecretStr
from sqlalchemy import event, update

from app.config import ServiceClientConfig
from app.models import CreditReservation, User
from app.models.base import utcnow
from app.repositories import credits as credit_repo
from app.schemas.credit import MAX_AMOUNT, MAX_BALANCE
from app.services import credits as credit_service
from tests.conftest import AppUser, UserFactory, assert_error_shape, service_token


async def _set_balance(client: AsyncClient, admin: dict[str, str], user: AppUser, target: int) -> None:
    current = (await client.get("/api/v1/credits", headers=user.headers)).json()["balance"]
    if current != target:
        response = await client.post(
            f"/api/v1/admin/users/{user.id}/credits",
            json={"amount": target - current, "reason": "test setup"},
            headers=admin,
        )
        assert response.status_code == 201, response.text


async def _reserve(
    client: AsyncClient, service: dict[str, str], user: AppUser, amount: int, key: str | None = None
):  # type: ignore[no-untyped-def]
    return await client.post(
        "/api/v1/credits/reservations",
        json={
            "user_id": user.id,
            "amount": amount,
            "idempotency_key": key or uuid.uuid4().hex,
            "reference": "message:abc",
        },
        headers=service,
    )


async def _ledger_sum(app: FastAPI, user: AppUser) -> int:
    async with app.state.sessionmaker() as session:
        return await credit_repo.ledger_sum(session, uuid.UUID(user.id))


async def _balance(client: AsyncClient, user: AppUser) -> int:
    return int((await client.get("/api/v1/credits", headers=user.headers)).json()["balance"])


async def test_fifty_concurrent_reservations_against_ten_credits(
    app: FastAPI,
    client: AsyncClient,
    make_user: UserFactory,
    admin_headers: dict[str, str],
    service_headers: dict[str, str],
) -> None:
    user = await make_user()
    await _set_balance(client, admin_headers, user, 10)
    responses = await asyncio.gather(*[_reserve(client, service_headers, user, 1) for _ in range(50)])
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 10 and statuses.count(402) == 40
    assert await _balance(client, user) == 0
    assert await _ledger_sum(app, user) == 0
    refused = next(r for r in responses if r.status_code == 402)
    assert_error_shape(refused.json(), "insufficient_credits")


async def test_repeated_idempotency_key_charges_once_even_concurrently(
    app: FastAPI, client: AsyncClient, make_user: UserFactory, service_headers: dict[str, str]
) -> None:
    user = await make_user()
    key = uuid.uuid4().hex
    responses = await asyncio.gather(*[_reserve(client, service_headers, user, 7, key) for _ in range(8)])
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await _balance(client, user) == 93
    assert await _ledger_sum(app, user) == 93


async def test_commit_charges_actual_cost_and_returns_the_rest(
    app: FastAPI, client: AsyncClient, make_user: UserFactory, service_headers: dict[str, str]
) -> None:
    user = await make_user()
    reservation = (await _reserve(client, service_headers, user, 10)).json()
    assert await _balance(client, user) == 90
    committed = await client.post(
        f"/api/v1/credits/reservations/{reservation['id']}/commit",
        json={"amount": 4},
        headers=service_headers,
    )
    assert committed.status_code == 200
    assert committed.json()["status"] == "committed" and committed.json()["committed_amount"] == 4
    assert await _balance(client, user) == 96
    again = await client.post(
        f"/api/v1/credits/reservations/{reservation['id']}/commit",
        json={"amount": 4},
        headers=service_headers,
    )
    assert again.status_code == 200 and await _balance(client, user) == 96
    ledger = (await client.get("/api/v1/credits/transactions", headers=user.headers)).json()
    assert [(t["kind"], t["amount"], t["balance_after"]) for t in ledger["items"]][:2] == [
        ("refund", 6, 96),
        ("reservation", -10, 90),
    ]
    assert await _ledger_sum(app, user) == 96


async def test_commit_more_than_reserved_is_422(
    client: AsyncClient, make_user: UserFactory, service_headers: dict[str, str]
) -> None:
    user = await make_user()
    reservation = (await _reserve(client, service_headers, user, 3)).json()
    response = await client.post(
        f"/api/v1/credits/reservations/{reservation['id']}/commit",
        json={"amount": 4},
        headers=service_headers,
    )
    assert response.status_code == 422
    assert_error_shape(response.json(), "amount_exceeds_reservation")


async def test_release_returns_everything_and_cannot_then_commit(
    client: AsyncClient, make_user: UserFactory, service_headers: dict[str, str]
) -> None:
    user = await make_user()
    reservation = (await _reserve(client, service_headers, user, 25)).json()
    released = await client.post(
        f"/api/v1/credits/reservations/{reservation['id']}/release", headers=service_headers
    )
    assert released.status_code == 200 and released.json()["status"] == "released"
    assert await _balance(client, user) == 100
    late = await client.post(
        f"/api/v1/credits/reservations/{reservation['id']}/commit",
        json={"amount": 1},
        headers=service_headers,
    )
    assert late.status_code == 409
    assert await _balance(client, user) == 100


async def test_unsettled_reservations_expire_and_credits_return(
    app: FastAPI, client: AsyncClient, make_user: UserFactory, service_headers: dict[str, str]
) -> None:
    user = await make_user()
    async with app.state.sessionmaker() as session:
        await credit_service.expire_due(session)  # whatever earlier tests left due, so the count is exact
    reservation = (await _reserve(client, service_headers, user, 30)).json()
    async with app.state.sessionmaker() as session:
        await session.execute(
            update(CreditReservation)
            .where(CreditReservation.id == uuid.UUID(reservation["id"]))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
        assert await credit_service.expire_due(session) == 1
    assert await _balance(client, user) == 100
    state = await client.get(f"/api/v1/credits/reservations/{reservation['id']}", headers=service_headers)
    assert state.json()["status"] == "expired"
    assert await _ledger_sum(app, user) == 100


async def test_reservation_for_unknown_user_is_404(
    client: AsyncClient, service_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/api/v1/credits/reservations",
        json={"user_id": str(uuid.uuid4()), "amount": 1, "idempotency_key": "k"},
        headers=service_headers,
    )
    assert response.status_code == 404


async def test_admin_deduct_below_zero_is_refused(
    client: AsyncClient, make_user: UserFactory, admin_headers: dict[str, str]
) -> None:
    user = await make_user()
    response = await client.post(
        f"/api/v1/admin/users/{user.id}/credits",
        json={"amount": -101, "reason": "too much"},
        headers=admin_headers,
    )
    assert response.status_code == 409
    assert await _balance(client, user) == 100


async def test_grants_stop_at_the_balance_limit_and_refunds_still_land(
    app: FastAPI,
    client: AsyncClient,
    make_user: UserFactory,
    admin_headers: dict[str, str],
    service_headers: dict[str, str],
) -> None:
    """A refund is never refused, so no balance may get near the column's limit: grants stop at
    MAX_BALANCE, and a hold refunded on top of a full balance still fits (before, the sweeper's refund
    overflowed the 32-bit column and every sweep failed)."""
    user = await make_user()
    async with app.state.sessionmaker() as session:  # a balance of a billion by grants would take long
        await session.execute(
            update(User).where(User.id == uuid.UUID(user.id)).values(credits=MAX_BALANCE - 5)
        )
        await session.commit()
    held = (await _reserve(client, service_headers, user, MAX_AMOUNT)).json()
    regrant = {"amount": MAX_AMOUNT, "reason": "refill"}
    url = f"/api/v1/admin/users/{user.id}/credits"
    assert (await client.post(url, json=regrant, headers=admin_headers)).status_code == 201
    over = await client.post(url, json={"amount": 10, "reason": "too much"}, headers=admin_headers)
    assert over.status_code == 409, over.text
    assert_error_shape(over.json(), "balance_limit")
    assert over.json()["error"]["details"] == {"balance": MAX_BALANCE - 5, "max_balance": MAX_BALANCE}
    release_url = f"/api/v1/credits/reservations/{held['id']}/release"
    released = await client.post(release_url, headers=service_headers)
    assert released.status_code == 200 and released.json()["status"] == "released"
    assert await _balance(client, user) == MAX_BALANCE - 5 + MAX_AMOUNT


@pytest.mark.parametrize("amount", [True, 5.0, "5"])
async def test_amounts_must_be_json_integers(
    client: AsyncClient, make_user: UserFactory, service_headers: dict[str, str], amount: Any
) -> None:
    user = await make_user()
    body = {"user_id": user.id, "amount": amount, "idempotency_key": uuid.uuid4().hex}
    response = await client.post("/api/v1/credits/reservations", json=body, headers=service_headers)
    assert response.status_code == 422, response.text
    held = (await _reserve(client, service_headers, user, 5)).json()
    commit = await client.post(
        f"/api/v1/credits/reservations/{held['id']}/commit", json={"amount": amount}, headers=service_headers
    )
    assert commit.status_code == 422, commit.text
    assert await _balance(client, user) == 95


async def test_admin_grant_appears_in_ledger_with_reason(
    client: AsyncClient, make_user: UserFactory, admin_headers: dict[str, str]
) -> None:
    user = await make_user()
    response = await client.post(
        f"/api/v1/admin/users/{user.id}/credits",
        json={"amount": 50, "reason": "welcome gift"},
        headers=admin_headers,
    )
    assert response.status_code == 201
    ledger = (await client.get("/api/v1/credits/transactions?limit=1", headers=user.headers)).json()
    assert ledger["total"] == 2 and ledger["limit"] == 1
    entry = ledger["items"][0]
    assert (entry["amount"], entry["kind"], entry["balance_after"], entry["reference"]) == (
        50,
        "admin_grant",
        150,
        "welcome gift",
    )


# --- ownership: a reservation belongs to the service client that created it ---


@pytest.fixture
async def other_service_headers(
    app: FastAPI, client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """A second service client holding `credits:write` (say, llm-service charging direct callers)."""
    settings = app.state.auth.settings
    clients = {
        **settings.service_clients,
        "billing-test": ServiceClientConfig(
            secret=SecretStr("billing-test-secret"), scopes=["credits:write"]
        ),
    }
    monkeypatch.setattr(settings, "service_clients", clients)
    return await service_token(client, client_id="billing-test", secret="billing-test-secret")


async def test_another_client_cannot_read_commit_or_release_a_reservation(
    app: FastAPI,
    client: AsyncClient,
    make_user: UserFactory,
    service_headers: dict[str, str],
    other_service_headers: dict[str, str],
) -> None:
    user = await make_user()
    reservation = (await _reserve(client, service_headers, user, 10)).json()
    url = f"/api/v1/credits/reservations/{reservation['id']}"
    read = await client.get(url, headers=other_service_headers)
    commit = await client.post(f"{url}/commit", json={"amount": 1}, headers=other_service_headers)
    release = await client.post(f"{url}/release", headers=other_service_headers)
    for response in (read, commit, release):
        assert response.status_code == 404, response.text
        assert_error_shape(response.json(), "not_found")
    assert await _balance(client, user) == 90
    own = await client.get(url, headers=service_headers)
    assert own.status_code == 200 and own.json()["status"] == "held"
    committed = await client.post(f"{url}/commit", json={"amount": 3}, headers=service_headers)
    assert committed.status_code == 200 and committed.json()["committed_amount"] == 3
    assert await _balance(client, user) == 97
    assert await _ledger_sum(app, user) == 97


async def test_another_clients_idempotency_key_does_not_return_its_reservation(
    client: AsyncClient,
    make_user: UserFactory,
    service_headers: dict[str, str],
    other_service_headers: dict[str, str],
) -> None:
    user = await make_user()
    first = await _reserve(client, service_headers, user, 10, key="shared-key")
    assert first.status_code == 201
    other = await _reserve(client, other_service_headers, user, 10, key="shared-key")
    assert other.status_code == 409, other.text
    assert_error_shape(other.json(), "idempotency_key_in_use")
    assert first.json()["id"] not in other.text
    assert await _balance(client, user) == 90


async def test_a_service_lists_its_own_reservations_still_held_oldest_first_and_older_than_asked(
    app: FastAPI,
    client: AsyncClient,
    make_user: UserFactory,
    service_headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = app.state.auth.settings
    client_id = f"sweeper-{uuid.uuid4().hex[:8]}"  # its own client: nothing of other tests is listed
    config = ServiceClientConfig(secret=SecretStr("sweeper-test-secret"), scopes=["credits:write"])
    monkeypatch.setattr(settings, "service_clients", {**settings.service_clients, client_id: config})
    mine = await service_token(client, client_id=client_id, secret="sweeper-test-secret")
    user = await make_user()
    old, new, released = [(await _reserve(client, mine, user, 5)).json() for _ in range(3)]
    await _reserve(client, service_headers, user, 5)  # another client's: never listed
    await client.post(f"/api/v1/credits/reservations/{released['id']}/release", headers=mine)
    async with app.state.sessionmaker() as session:
        await session.execute(
            update(CreditReservation)
            .where(CreditReservation.id == uuid.UUID(old["id"]))
            .values(created_at=utcnow() - timedelta(seconds=120))
        )
        await session.commit()

    aged = await client.get("/api/v1/credits/reservations", params={"older_than_seconds": 60}, headers=mine)
    every = await client.get("/api/v1/credits/reservations", headers=mine)
    second = await client.get("/api/v1/credits/reservations", params={"limit": 1, "offset": 1}, headers=mine)
    as_user = await client.get("/api/v1/credits/reservations", headers=user.headers)

    assert aged.status_code == 200, aged.text
    assert [r["id"] for r in aged.json()["items"]] == [old["id"]] and aged.json()["total"] == 1
    assert [r["id"] for r in every.json()["items"]] == [old["id"], new["id"]]
    assert every.json()["items"][0]["idempotency_key"] == old["idempotency_key"]
    assert [r["id"] for r in second.json()["items"]] == [new["id"]] and second.json()["total"] == 2
    assert as_user.status_code == 403


# --- one statement round trip per reserve, commit and release ---


@contextmanager
def count_round_trips(app: FastAPI) -> Iterator[list[str]]:
    """Every statement, BEGIN, COMMIT and ROLLBACK sent on the app's two engines."""
    sent: list[str] = []
    transactional = app.state.sessionmaker.kw["bind"].sync_engine
    autocommit = app.state.read_sessionmaker.kw["bind"].sync_engine

    def on_statement(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    def on_begin(conn: Any) -> None:
        sent.append("BEGIN")

    def on_end(conn: Any) -> None:
        sent.append("COMMIT/ROLLBACK")

    # On the autocommit engine SQLAlchemy's begin/commit events send nothing to PostgreSQL.
    hooks = [(engine, "before_cursor_execute", on_statement) for engine in (transactional, autocommit)]
    hooks += [(transactional, "begin", on_begin), (transactional, "commit", on_end)]
    hooks += [(transactional, "rollback", on_end)]
    for engine, name, hook in hooks:
        event.listen(engine, name, hook)
    try:
        yield sent
    finally:
        for engine, name, hook in hooks:
            event.remove(engine, name, hook)


async def test_reserve_commit_and_release_are_one_round_trip_each(
    app: FastAPI, client: AsyncClient, make_user: UserFactory, service_headers: dict[str, str]
) -> None:
    user = await make_user()
    with count_round_trips(app) as sent:
        created = await _reserve(client, service_headers, user, 10)
    assert created.status_code == 201 and len(sent) == 1, sent
    with count_round_trips(app) as sent:
        replay = await _reserve(client, service_headers, user, 10, key=created.json()["idempotency_key"])
    assert replay.status_code == 200 and len(sent) == 1, sent
    with count_round_trips(app) as sent:
        committed = await client.post(
            f"/api/v1/credits/reservations/{created.json()['id']}/commit",
            json={"amount": 4},
            headers=service_headers,
        )
    assert committed.status_code == 200 and len(sent) == 1, sent
    second = (await _reserve(client, service_headers, user, 10)).json()
    with count_round_trips(app) as sent:
        released = await client.post(
            f"/api/v1/credits/reservations/{second['id']}/release", headers=service_headers
        )
    assert released.status_code == 200 and len(sent) == 1, sent
    assert await _balance(client, user) == 96
    assert await _ledger_sum(app, user) == 96


# --- concurrency: never negative, settled once, balance = ledger ---


async def test_concurrent_reserves_of_mixed_amounts_never_go_negative(
    app: FastAPI,
    client: AsyncClient,
    make_user: UserFactory,
    admin_headers: dict[str, str],
    service_headers: dict[str, str],
) -> None:
    user = await make_user()
    await _set_balance(client, admin_headers, user, 17)
    amounts = [1 + i % 4 for i in range(50)]  # 1, 2, 3, 4, 1, ...: far more than 17 in total
    responses = await asyncio.gather(*[_reserve(client, service_headers, user, a) for a in amounts])
    assert {r.status_code for r in responses} == {201, 402}
    held = sum(a for a, r in zip(amounts, responses, strict=True) if r.status_code == 201)
    balance = await _balance(client, user)
    assert balance == 17 - held and balance >= 0
    for refused in (r for r in responses if r.status_code == 402):
        details = refused.json()["error"]["details"]
        assert details["needed"] > details["balance"] >= 0
    assert await _ledger_sum(app, user) == balance
    async with app.state.sessionmaker() as session:
        rows, _ = await credit_service.list_transactions(session, uuid.UUID(user.id), limit=100, offset=0)
    reservations = [r for r in rows if r.kind == "reservation"]
    assert len(reservations) == sum(r.status_code == 201 for r in responses)
    # Each ledger row's balance_after is the balance that row left: replaying them in order agrees.
    running = 0
    for row in sorted(rows, key=lambda r: r.id):
        running += row.amount
        assert row.balance_after == running


async def test_concurrent_commit_and_release_of_one_reservation_settle_once(
    app: FastAPI, client: AsyncClient, make_user: UserFactory, service_headers: dict[str, str]
) -> None:
    user = await make_user()
    for _ in range(5):
        reservation = (await _reserve(client, service_headers, user, 10)).json()
        url = f"/api/v1/credits/reservations/{reservation['id']}"
        calls = [client.post(f"{url}/commit", json={"amount": 6}, headers=service_headers) for _ in range(4)]
        calls += [client.post(f"{url}/release", headers=service_headers) for _ in range(4)]
        responses = await asyncio.gather(*calls)
        commits, releases = responses[:4], responses[4:]
        final = (await client.get(url, headers=service_headers)).json()
        if final["status"] == "committed":
            assert [r.status_code for r in commits] == [200] * 4
            assert [r.status_code for r in releases] == [409] * 4
        else:
            assert final["status"] == "released"
            assert [r.status_code for r in commits] == [409] * 4
            assert [r.status_code for r in releases] == [200] * 4
    async with app.state.sessionmaker() as session:
        rows, _ = await credit_service.list_transactions(session, uuid.UUID(user.id), limit=100, offset=0)
    settlements = [r for r in rows if r.kind in ("refund", "released")]
    assert len(settlements) == 5  # one per reservation, whichever won
    balance = await _balance(client, user)
    assert balance == await _ledger_sum(app, user)
    assert balance == 100 - 6 * sum(r.kind == "refund" for r in rows)


async def test_commit_of_zero_settles_without_charge(
    app: FastAPI, client: AsyncClient, make_user: UserFactory, service_headers: dict[str, str]
) -> None:
    user = await make_user()
    reservation = (await _reserve(client, service_headers, user, 8)).json()
    url = f"/api/v1/credits/reservations/{reservation['id']}"
    committed = await client.post(f"{url}/commit", json={"amount": 0}, headers=service_headers)
    assert committed.status_code == 200
    assert (committed.json()["status"], committed.json()["committed_amount"]) == ("committed", 0)
    assert await _balance(client, user) == 100
    other_amount = await client.post(f"{url}/commit", json={"amount": 1}, headers=service_headers)
    assert other_amount.status_code == 409
    assert_error_shape(other_amount.json(), "reservation_settled")


async def test_commit_of_the_full_amount_writes_no_refund(
    app: FastAPI, client: AsyncClient, make_user: UserFactory, service_headers: dict[str, str]
) -> None:
    user = await make_user()
    reservation = (await _reserve(client, service_headers, user, 8)).json()
    url = f"/api/v1/credits/reservations/{reservation['id']}"
    committed = await client.post(f"{url}/commit", json={"amount": 8}, headers=service_headers)
    assert committed.status_code == 200 and committed.json()["committed_amount"] == 8
    assert committed.json()["settled_at"] is not None
    ledger = (await client.get("/api/v1/credits/transactions", headers=user.headers)).json()
    assert [(t["kind"], t["amount"], t["balance_after"]) for t in ledger["items"]] == [
        ("reservation", -8, 92),
        ("signup_bonus", 100, 100),
    ]
    assert await _balance(client, user) == 92


async def test_release_twice_is_idempotent_and_unknown_reservation_is_404(
    client: AsyncClient, make_user: UserFactory, service_headers: dict[str, str]
) -> None:
    user = await make_user()
    reservation = (await _reserve(client, service_headers, user, 8)).json()
    url = f"/api/v1/credits/reservations/{reservation['id']}"
    first = await client.post(f"{url}/release", headers=service_headers)
    second = await client.post(f"{url}/release", headers=service_headers)
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json() == second.json()
    assert await _balance(client, user) == 100
    missing = f"/api/v1/credits/reservations/{uuid.uuid4()}"
    for response in (
        await client.get(missing, headers=service_headers),
        await client.post(f"{missing}/commit", json={"amount": 1}, headers=service_headers),
        await client.post(f"{missing}/release", headers=service_headers),
    ):
        assert response.status_code == 404
        assert_error_shape(response.json(), "not_found")


async def test_insufficient_credits_is_402_with_balance_and_needed_and_writes_nothing(
    app: FastAPI, client: AsyncClient, make_user: UserFactory, service_headers: dict[str, str]
) -> None:
    user = await make_user()
    refused = await _reserve(client, service_headers, user, 101, key="too-much")
    assert refused.status_code == 402
    assert_error_shape(refused.json(), "insufficient_credits")
    assert refused.json()["error"]["details"] == {"needed": 101, "balance": 100}
    assert await _ledger_sum(app, user) == 100
    # Nothing was kept under that key: once affordable, the same key reserves afresh.
    accepted = await _reserve(client, service_headers, user, 100, key="too-much")
    assert accepted.status_code == 201
    assert await _balance(client, user) == 0


async def test_expiry_sweep_racing_a_commit_settles_once(
    app: FastAPI, client: AsyncClient, make_user: UserFactory, service_headers: dict[str, str]
) -> None:
    user = await make_user()
    outcomes = []
    for _ in range(6):
        reservation = (await _reserve(client, service_headers, user, 10)).json()
        async with app.state.sessionmaker() as session:
            await session.execute(
                update(CreditReservation)
                .where(CreditReservation.id == uuid.UUID(reservation["id"]))
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
            await session.commit()

        async def sweep() -> int:
            async with app.state.sessionmaker() as session:
                return await credit_service.expire_due(session)

        url = f"/api/v1/credits/reservations/{reservation['id']}"
        committed, expired = await asyncio.gather(
            client.post(f"{url}/commit", json={"amount": 4}, headers=service_headers), sweep()
        )
        final = (await client.get(url, headers=service_headers)).json()["status"]
        assert (final, committed.status_code, expired) in (("committed", 200, 0), ("expired", 409, 1))
        if final == "expired":  # the committing client can tell its reservation expired
            assert_error_shape(committed.json(), "reservation_settled")
            assert committed.json()["error"]["details"] == {"status": "expired"}
        outcomes.append(final)
    balance = await _balance(client, user)
    assert balance == 100 - 4 * outcomes.count("committed")
    assert await _ledger_sum(app, user) == balance


# --- a reservation's lifetime, a key reused for another amount, an inactive account ---


def _lifetime(reservation: dict[str, Any]) -> float:
    expires = datetime.fromisoformat(reservation["expires_at"])
    return (expires - datetime.fromisoformat(reservation["created_at"])).total_seconds()


async def test_the_reserving_client_chooses_the_lifetime_within_the_maximum(
    app: FastAPI, client: AsyncClient, make_user: UserFactory, service_headers: dict[str, str]
) -> None:
    user = await make_user()
    settings = app.state.settings
    default = await _reserve(client, service_headers, user, 1)
    assert default.status_code == 201 and _lifetime(default.json()) == settings.reservation_ttl_seconds
    body = {"user_id": user.id, "amount": 1, "reference": "message:abc"}
    for ttl in (1, 1320, settings.max_reservation_ttl_seconds):
        chosen = await client.post(
            "/api/v1/credits/reservations",
            json={**body, "idempotency_key": uuid.uuid4().hex, "ttl_seconds": ttl},
            headers=service_headers,
        )
        assert chosen.status_code == 201, chosen.text
        assert _lifetime(chosen.json()) == ttl
        stored = await client.get(
            f"/api/v1/credits/reservations/{chosen.json()['id']}", headers=service_headers
        )
        assert _lifetime(stored.json()) == ttl
    for ttl in (0, -5, settings.max_reservation_ttl_seconds + 1):
        refused = await client.post(
            "/api/v1/credits/reservations",
            json={**body, "idempotency_key": uuid.uuid4().hex, "ttl_seconds": ttl},
            headers=service_headers,
        )
        assert refused.status_code == 422, refused.text
        assert_error_shape(refused.json(), "validation_error")
    assert await _balance(client, user) == 96
    assert await _ledger_sum(app, user) == 96


async def test_the_same_key_for_another_amount_is_409_and_charges_nothing_more(
    app: FastAPI, client: AsyncClient, make_user: UserFactory, service_headers: dict[str, str]
) -> None:
    user = await make_user()
    first = await _reserve(client, service_headers, user, 10, key="reused")
    assert first.status_code == 201
    other = await _reserve(client, service_headers, user, 11, key="reused")
    assert other.status_code == 409, other.text
    assert_error_shape(other.json(), "idempotency_key_in_use")
    same = await _reserve(client, service_headers, user, 10, key="reused")
    assert same.status_code == 200 and same.json()["id"] == first.json()["id"]
    assert await _balance(client, user) == 90
    assert await _ledger_sum(app, user) == 90


async def test_an_inactive_account_gets_no_reservation(
    app: FastAPI,
    client: AsyncClient,
    make_user: UserFactory,
    admin_headers: dict[str, str],
    service_headers: dict[str, str],
) -> None:
    user = await make_user()
    held = (await _reserve(client, service_headers, user, 10)).json()
    deactivated = await client.patch(
        f"/api/v1/admin/users/{user.id}", json={"is_active": False}, headers=admin_headers
    )
    assert deactivated.status_code == 200, deactivated.text
    with count_round_trips(app) as sent:
        refused = await _reserve(client, service_headers, user, 5)
    assert refused.status_code == 403, refused.text
    assert_error_shape(refused.json(), "account_inactive")
    assert len(sent) == 1, sent
    replay = await _reserve(client, service_headers, user, 10, key=held["idempotency_key"])
    assert replay.status_code == 403
    # A reservation held before the deactivation can still be settled.
    released = await client.post(
        f"/api/v1/credits/reservations/{held['id']}/release", headers=service_headers
    )
    assert released.status_code == 200
    async with app.state.sessionmaker() as session:
        assert await credit_repo.balance_of(session, uuid.UUID(user.id)) == 100
    assert await _ledger_sum(app, user) == 100
