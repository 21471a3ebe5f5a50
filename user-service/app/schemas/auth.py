"""Token request and response shapes."""

from __future__ import annotations

from pydantic import BaseModel, Field

from chat_common.validation import InputModel


class TokenPair(BaseModel):
    """A login's tokens (RFC 6749 5.1): send `Authorization: Bearer <access_token>`; renew with
    `POST /api/v1/auth/refresh`."""

    access_token: str = Field(description="RS256 JWT, verified by every service with the JWKS")
    refresh_token: str = Field(description="Opaque, single use: exchange it at /api/v1/auth/refresh")
    token_type: str = "bearer"
    expires_in: int = Field(description="Access token lifetime in seconds")


class RefreshRequest(InputModel):
    """The body of refresh and logout: the refresh token a login or an earlier refresh returned."""

    refresh_token: str = Field(
        min_length=1,
        max_length=512,
        description="The `refresh_token` of the last token response (single use: refresh rotates it)",
        examples=["kq3V6Jx0lV2cV1m1p0YxJb8k5o9rE2nS4tU7wX0zA1c"],
    )


class ServiceToken(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    scope: str
