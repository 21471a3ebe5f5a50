"""What a client meets over HTTP: an OpenAPI document whose Authorize button reaches user-service
and whose errors are the shared envelope, bearer challenges, and the body's Content-Type named."""

from __future__ import annotations

import json

import httpx

from chat_common.openapi import convention_problems
from tests.conftest import chat_body


async def test_authorize_reaches_user_service_and_every_operation_documents_the_error_envelope(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    assert convention_problems(document, "http://localhost:8024/api/v1/auth/token") == []


async def test_a_missing_token_and_a_refused_one_get_their_bearer_challenges(
    client: httpx.AsyncClient,
) -> None:
    missing = await client.get("/api/v1/models", headers={"Authorization": ""})
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    refused = await client.get("/api/v1/models", headers={"Authorization": "Bearer not-a-jwt"})
    assert refused.status_code == 401
    assert (
        refused.headers["WWW-Authenticate"]
        == 'Bearer error="invalid_token", error_description="Malformed token"'
    )


async def test_a_chat_body_sent_as_a_form_is_415_naming_json(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/chat/completions",
        content=json.dumps(chat_body()).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415
    assert response.json()["error"]["details"]["expected"] == "application/json"
