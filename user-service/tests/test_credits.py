"""Credits: balance, ledger, admin adjustments and service reservations under concurrency."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import update

from app.models import CreditReservation
from app.models.base import utcnow
from app.repositories import credits as credit_repo
from app.services import credits as credit_service
from tests.conftest import AppUser, UserFactory, assert_error_shape


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
    reservation = (await _reserve(client, service_headers, user, 30)).json()
    async with app.state.sessionmaker() as session:
        await session.execute(
            update(CreditReservation)
            .where(CreditReservation.id == uuid.UUID(reservation["id"]))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
        assert await credit_service.expire_due(session) >= 1
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
