"""Mock mode only (MOCK_SERVICES=true): development tokens and the built-in character catalogue."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from app.clients.mock import MOCK_CHARACTERS
from app.core.mock_auth import MOCK_TOKEN_SECONDS

router = APIRouter(prefix="/mock", tags=["mock"])


class MockTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: uuid.UUID = Field(examples=["5f0c2b1e-8d4a-4c1b-9e2f-3a4b5c6d7e8f"])


class MockToken(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = MOCK_TOKEN_SECONDS


@router.post("/token", response_model=MockToken)
async def mock_token(data: MockTokenRequest, request: Request) -> MockToken:
    """A development token for any user id (only this service, in mock mode, accepts it)."""
    return MockToken(access_token=request.app.state.mock_auth.token(str(data.user_id)))


@router.get("/characters")
async def mock_characters() -> list[dict[str, Any]]:
    """The built-in characters a conversation can be started with in mock mode."""
    return [{"id": character_id, **c.model_dump()} for character_id, c in MOCK_CHARACTERS.items()]
