"""Token request and response shapes."""

from __future__ import annotations

from pydantic import BaseModel, Field

from chat_common.validation import InputModel


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Access token lifetime in seconds")


class RefreshRequest(InputModel):
    refresh_token: str = Field(min_length=1, max_length=512)


class ServiceToken(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    scope: str
