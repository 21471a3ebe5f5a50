"""What a client meets over HTTP: Location of what it created, uncached tokens, bearer challenges,
password rules in the schema and on `password`, and the body's Content-Type named when wrong."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from tests.conftest import PASSWORD, AppUser, UserFactory, assert_error_shape, login


def new_user(**overrides: str) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:10]
    return {
        "email": f"conv{suffix}@example.com",
        "username": f"conv{suffix}",
        "display_name": "Conventional",
        "password": PASSWORD,
        **overrides,
    }


def assert_not_cached(headers: Any) -> None:
    assert headers["Cache-Control"] == "no-store" and headers["Pragma"] == "no-cache"


# --- Location ------------------------------------------------------------------------------------


async def test_register_locates_the_new_account(client: AsyncClient) -> None:
    body = new_user()
    created = await client.post("/api/v1/auth/register", json=body)
    assert created.status_code == 201
    assert created.headers["Location"] == f"/api/v1/users/{created.json()['id']}"
    tokens = await login(client, body["username"], PASSWORD)
    read = await client.get(
        created.headers["Location"], headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert read.json()["username"] == body["username"]


async def test_persona_create_locates_the_new_persona(client: AsyncClient, make_user: UserFactory) -> None:
    user = await make_user()
    created = await client.post("/api/v1/users/me/personas", json={"name": "Ada"}, headers=user.headers)
    assert created.status_code == 201
    read = await client.get(created.headers["Location"], headers=user.headers)
    assert read.status_code == 200 and read.json() == created.json()


async def test_a_new_reservation_is_located_and_a_replay_is_not(
    client: AsyncClient, make_user: UserFactory, service_headers: dict[str, str]
) -> None:
    user = await make_user()
    body = {"user_id": user.id, "amount": 3, "idempotency_key": uuid.uuid4().hex, "reference": "message:1"}
    created = await client.post("/api/v1/credits/reservations", json=body, headers=service_headers)
    assert created.status_code == 201
    read = await client.get(created.headers["Location"], headers=service_headers)
    assert read.json()["id"] == created.json()["id"]
    replay = await client.post("/api/v1/credits/reservations", json=body, headers=service_headers)
    assert replay.status_code == 200 and "Location" not in replay.headers


# --- token responses are never cached (RFC 6749 5.1) ---------------------------------------------


async def test_login_refresh_and_service_token_responses_are_not_cached(
    client: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    logged_in = await client.post(
        "/api/v1/auth/token", data={"username": user.username, "password": PASSWORD}
    )
    assert logged_in.status_code == 200
    assert_not_cached(logged_in.headers)
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert refreshed.status_code == 200
    assert_not_cached(refreshed.headers)
    service = await client.post(
        "/api/v1/auth/service-token",
        data={
            "grant_type": "client_credentials",
            "client_id": "message-service",
            "client_secret": "dev-message-service-secret",
            "scope": "credits:write",
        },
    )
    assert service.status_code == 200
    assert_not_cached(service.headers)


def test_the_refresh_body_and_the_no_store_headers_are_documented(app: FastAPI) -> None:
    document = app.openapi()
    refresh = document["paths"]["/api/v1/auth/refresh"]["post"]
    body_ref = refresh["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = document["components"]["schemas"][body_ref.rsplit("/", 1)[1]]
    assert body["required"] == ["refresh_token"] and body["properties"]["refresh_token"]["description"]
    for path in ("/api/v1/auth/token", "/api/v1/auth/refresh", "/api/v1/auth/service-token"):
        assert set(document["paths"][path]["post"]["responses"]["200"]["headers"]) == {
            "Cache-Control",
            "Pragma",
        }


# --- bearer challenges (RFC 6750 3) --------------------------------------------------------------


async def test_a_deactivated_accounts_token_is_challenged_as_invalid(
    client: AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    assert (await client.delete("/api/v1/users/me", headers=user.headers)).status_code == 204
    response = await client.get("/api/v1/users/me", headers=user.headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token", error_description=')
    assert (await client.get("/api/v1/users/me")).headers["WWW-Authenticate"] == "Bearer"


# --- password rules ------------------------------------------------------------------------------


async def test_a_password_containing_the_username_is_refused_on_password(client: AsyncClient) -> None:
    body = new_user()
    body["password"] = f"{body['username'].upper()}-42!"
    response = await client.post("/api/v1/auth/register", json=body)
    assert response.status_code == 422
    assert_error_shape(response.json(), "validation_error")
    error = response.json()["error"]
    assert error["details"][0]["loc"] == ["body", "password"]
    assert error["message"] == "password: Value error, Password must not contain the username"


@pytest.mark.parametrize("password", ["short1!", "onlyletters", "aaaaaaa1", "é" * 37 + "1"])
async def test_every_password_rule_is_reported_on_password(client: AsyncClient, password: str) -> None:
    response = await client.post("/api/v1/auth/register", json=new_user(password=password))
    assert response.status_code == 422
    assert [d["loc"] for d in response.json()["error"]["details"]] == [["body", "password"]]


async def test_a_new_password_containing_the_username_is_refused_on_new_password(
    client: AsyncClient, make_user: UserFactory
) -> None:
    user: AppUser = await make_user()
    response = await client.post(
        "/api/v1/users/me/password",
        json={"current_password": user.password, "new_password": f"x{user.username}-9"},
        headers=user.headers,
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["loc"] == ["body", "new_password"]
    assert (await login(client, user.username, user.password))["access_token"]  # unchanged


def test_password_rules_are_in_the_schema(app: FastAPI) -> None:
    schemas = app.openapi()["components"]["schemas"]
    for model, field in (("UserCreate", "password"), ("PasswordChange", "new_password")):
        password = schemas[model]["properties"][field]
        assert (password["minLength"], password["maxLength"]) == (8, 72)
        for rule in (
            "72 bytes",
            "digits or symbols",
            "4 different characters",
            "not containing the username",
        ):
            assert rule in password["description"], (model, rule)


# --- the body's Content-Type ---------------------------------------------------------------------


async def test_json_sent_to_the_token_endpoint_is_415_naming_the_form(client: AsyncClient) -> None:
    response = await client.post("/api/v1/auth/token", json={"username": "ada", "password": PASSWORD})
    assert response.status_code == 415
    assert_error_shape(response.json(), "unsupported_media_type")
    assert "application/x-www-form-urlencoded" in response.json()["error"]["message"]


async def test_a_register_body_without_content_type_is_415_naming_json(client: AsyncClient) -> None:
    response = await client.post("/api/v1/auth/register", content=json.dumps(new_user()).encode())
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]["message"]


# --- the OpenAPI document ------------------------------------------------------------------------


def test_swagger_gets_tokens_from_this_service_and_errors_are_the_envelope(app: FastAPI) -> None:
    document = app.openapi()
    flow = document["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]["password"]
    assert flow["tokenUrl"] == "/api/v1/auth/token"
    envelope = {"$ref": "#/components/schemas/ErrorResponse"}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            errors = [r for status, r in operation["responses"].items() if status[0] in "45"]
            assert any(r["content"]["application/json"]["schema"] == envelope for r in errors), (method, path)
