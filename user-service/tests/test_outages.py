"""A failing backend is a 503 naming it, never a 500; nothing is charged when it fails."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import FastAPI
from httpx import AsyncClient

from app.repositories.rate_limits import LoginLimiter
from chat_common.database import DatabaseSettings, create_engine, create_sessionmaker
from chat_common.embedded import free_port
from tests.conftest import UserFactory, assert_error_shape


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


async def test_postgres_down_during_a_reservation_charges_nothing(
    app: FastAPI, client: AsyncClient, make_user: UserFactory, service_headers: dict[str, str]
) -> None:
    user = await make_user()
    with postgres_down(app, "sessionmaker"):
        response = await client.post(
            "/api/v1/credits/reservations",
            json={"user_id": user.id, "amount": 5, "idempotency_key": "outage"},
            headers=service_headers,
        )
    assert response.status_code == 503
    assert (await client.get("/api/v1/credits", headers=user.headers)).json()["balance"] == 100


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
