"""Service tokens from user-service by OAuth2 client credentials, cached until near expiry."""

from __future__ import annotations

import asyncio
import time

from chat_common.http import ServiceClient


class ServiceTokenProvider:
    """Fetches a scoped service token and reuses it until `refresh_margin` seconds before expiry."""

    def __init__(
        self,
        client: ServiceClient,
        *,
        client_id: str,
        client_secret: str,
        scopes: list[str],
        refresh_margin: float = 60.0,
    ) -> None:
        self.client = client
        self.client_id = client_id
        self.client_secret = client_secret
        self.scopes = scopes
        self.refresh_margin = refresh_margin
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        if self._token and time.monotonic() < self._expires_at - self.refresh_margin:
            return self._token
        async with self._lock:
            if self._token and time.monotonic() < self._expires_at - self.refresh_margin:
                return self._token
            response = await self.client.post(
                "/api/v1/auth/service-token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": self.client_id,
                    "client_secret": self.client_secret,
                    "scope": " ".join(self.scopes),
                },
                idempotent=True,
            )
            body = response.json()
            self._token = str(body["access_token"])
            self._expires_at = time.monotonic() + float(body["expires_in"])
            return self._token
