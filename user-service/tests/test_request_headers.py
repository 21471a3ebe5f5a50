"""Hostile request headers over real HTTP: what uvicorn passes on is read as FastAPI reads it."""

from __future__ import annotations

import json
import uuid

import httpx

from tests.conftest import PASSWORD, assert_error_shape


async def test_a_second_content_type_cannot_hide_deep_json_from_the_depth_check(live_url: str) -> None:
    """FastAPI parses the body by the first Content-Type; the depth check must look at the same one."""
    name = f"deep{uuid.uuid4().hex[:10]}"
    account = {"email": f"{name}@example.com", "username": name, "display_name": name, "password": PASSWORD}
    body = json.dumps(account)
    deep = body[:-1] + ', "ignored": ' + "[" * 500 + "]" * 500 + "}"
    headers = [("Content-Type", "application/json"), ("Content-Type", "text/plain")]
    async with httpx.AsyncClient(base_url=live_url, timeout=60) as http:
        response = await http.post("/api/v1/auth/register", content=deep, headers=headers)
        assert response.status_code == 422, response.text
        assert_error_shape(response.json(), "validation_error")
        assert response.json()["error"]["message"] == "JSON is nested deeper than 64 levels"
        fine = await http.post("/api/v1/auth/register", content=body, headers=headers)
        assert fine.status_code == 201, fine.text
        assert fine.json()["username"] == name
