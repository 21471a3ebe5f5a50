"""Every error in the shared shape with the request id; bad input is 4xx, never 500."""

from __future__ import annotations

import logging

import pytest
from httpx import AsyncClient

from tests.conftest import UserFactory, assert_error_shape


async def test_unknown_route_is_404_in_the_shared_shape(client: AsyncClient) -> None:
    response = await client.get("/api/v1/nope", headers={"X-Request-ID": "req-123"})
    assert response.status_code == 404
    assert_error_shape(response.json(), "not_found")
    assert response.json()["error"]["request_id"] == "req-123"
    assert response.headers["X-Request-ID"] == "req-123"


async def test_request_id_is_generated_when_missing(client: AsyncClient) -> None:
    response = await client.get("/api/v1/nope")
    assert response.json()["error"]["request_id"] == response.headers["X-Request-ID"]


async def test_wrong_method_is_405_in_the_shared_shape(client: AsyncClient) -> None:
    response = await client.delete("/api/v1/auth/register")
    assert response.status_code == 405
    assert_error_shape(response.json(), "method_not_allowed")


async def test_malformed_json_is_422(client: AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register", content=b'{"email": "a@b.c", ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert_error_shape(response.json(), "validation_error")


@pytest.mark.parametrize(
    "body",
    [
        {"email": 12, "username": "abc", "display_name": "x", "password": "Good-pass-1"},
        {"email": "not-an-email", "username": "abc", "display_name": "x", "password": "Good-pass-1"},
        {"email": "a@example.com", "username": ["abc"], "display_name": "x", "password": "Good-pass-1"},
        {"email": "a@example.com", "username": "a b", "display_name": "x", "password": "Good-pass-1"},
        {"email": "a@example.com", "username": "abc", "display_name": "", "password": "Good-pass-1"},
        {"email": "a@example.com", "username": "abc", "display_name": "x", "password": None},
        [],
        "just a string",
    ],
)
async def test_wrong_types_are_422(client: AsyncClient, body: object) -> None:
    response = await client.post("/api/v1/auth/register", json=body)
    assert response.status_code == 422
    assert_error_shape(response.json(), "validation_error")


async def test_huge_body_is_413(client: AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        content=b"{" + b" " * 2_000_000 + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert_error_shape(response.json(), "payload_too_large")


async def test_huge_chunked_body_is_413(client: AsyncClient) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(40):
            yield b" " * 65536

    response = await client.post(
        "/api/v1/auth/register", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413


async def test_emoji_and_unicode_everywhere_are_handled(client: AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        json={"email": "😀@example.com", "username": "😀😀😀", "display_name": "😀", "password": "😀" * 30},
    )
    assert response.status_code == 422
    login = await client.post("/api/v1/auth/token", data={"username": "😀" * 100, "password": "🔥" * 100})
    assert login.status_code == 401


async def test_bad_uuid_in_path_is_422(client: AsyncClient, make_user: UserFactory) -> None:
    user = await make_user()
    response = await client.get("/api/v1/users/not-a-uuid", headers=user.headers)
    assert response.status_code == 422
    assert_error_shape(response.json(), "validation_error")


async def test_out_of_range_pagination_is_422(client: AsyncClient, make_user: UserFactory) -> None:
    user = await make_user()
    response = await client.get("/api/v1/credits/transactions?limit=100000", headers=user.headers)
    assert response.status_code == 422


async def test_login_form_missing_fields_is_422(client: AsyncClient) -> None:
    response = await client.post("/api/v1/auth/token", data={"username": "x"})
    assert response.status_code == 422
    assert_error_shape(response.json(), "validation_error")


async def test_nul_characters_are_422_or_401_never_500(
    client: AsyncClient, make_user: UserFactory, admin_headers: dict[str, str]
) -> None:
    body = {
        "email": "nul@example.com",
        "username": "nulnul",
        "display_name": "a\u0000b",
        "password": "Good-pass-1",
    }
    response = await client.post("/api/v1/auth/register", json=body)
    assert response.status_code == 422 and "NUL" in response.json()["error"]["message"]
    login = await client.post("/api/v1/auth/token", data={"username": "a\u0000b", "password": "Good-pass-1"})
    assert login.status_code == 401
    user = await make_user()
    patch = await client.patch("/api/v1/users/me", json={"display_name": "\u0000"}, headers=user.headers)
    assert patch.status_code == 422
    search = await client.get("/api/v1/admin/users", params={"q": "a\u0000"}, headers=admin_headers)
    assert search.status_code == 422
    assert_error_shape(search.json(), "validation_error")


@pytest.mark.parametrize("depth", [500, 100_000])
@pytest.mark.parametrize(("opening", "closing"), [("[", "]"), ('{"a":', "}")])
async def test_deeply_nested_json_is_422_never_500(
    client: AsyncClient, depth: int, opening: str, closing: str
) -> None:
    nested = opening * depth + ("1" if opening != "[" else "") + closing * depth
    body = (
        '{"email": "deep@example.com", "username": "deep", "display_name": "Deep", '
        '"password": "Good-pass-1", "ignored": ' + nested + "}"
    )
    response = await client.post(
        "/api/v1/auth/register", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert_error_shape(response.json(), "validation_error")
    assert response.json()["error"]["message"] == "JSON is nested deeper than 64 levels"


async def test_database_error_text_goes_to_the_log_not_the_body(
    client: AsyncClient, admin_headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="chat_common.database")
    response = await client.get(
        "/api/v1/admin/users", params={"q": "a\u0000"}, headers={**admin_headers, "X-Request-ID": "db-err-1"}
    )
    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "validation_error",
        "message": "A value in the request is out of range or not valid text",
        "details": None,
        "request_id": "db-err-1",
    }
    logged = [r for r in caplog.records if r.name == "chat_common.database"]
    assert len(logged) == 1 and logged[0].levelno == logging.WARNING
    assert "invalid byte sequence for encoding" in logged[0].getMessage()
    assert getattr(logged[0], "correlation_id", None) == "db-err-1"
