"""The one inter-service HTTP client: timeouts, bounded retries, headers propagated, errors mapped."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from asgi_correlation_id import correlation_id

from chat_common.errors import (
    AppError,
    BadGatewayError,
    GatewayTimeoutError,
    ServiceUnavailableError,
    error_body,
)
from chat_common.transport import PooledTransport

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class ServiceClient:
    """Calls one downstream service by name; every failure becomes a 502/503/504 naming it.

    A 4xx from downstream is passed back as the same status and code, since it is the caller's
    mistake (or a rule of the downstream service), not an outage.
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        connect_timeout: float = 3.0,
        read_timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.1,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.retries = retries
        self.backoff = backoff
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            transport=transport or PooledTransport(),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def _headers(self, token: str | None, extra: dict[str, str] | None) -> dict[str, str]:
        headers = dict(extra or {})
        request_id = correlation_id.get()
        if request_id:
            headers.setdefault("X-Request-ID", request_id)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        idempotent: bool | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send a request; retry connection failures only when the call is idempotent."""
        method = method.upper()
        may_retry = idempotent if idempotent is not None else method in IDEMPOTENT_METHODS
        attempts = 1 + (self.retries if may_retry else 0)
        sent_headers = self._headers(token, headers)
        for attempt in range(attempts):
            try:
                response = await self._client.request(method, path, headers=sent_headers, **kwargs)
            except httpx.ConnectError as exc:
                if attempt + 1 < attempts:
                    await asyncio.sleep(self.backoff * (2**attempt))
                    continue
                raise ServiceUnavailableError(
                    f"{self.name} is unreachable",
                    code="dependency_unavailable",
                    details={"service": self.name},
                ) from exc
            except httpx.TimeoutException as exc:
                raise GatewayTimeoutError(
                    f"{self.name} did not answer in time",
                    code="dependency_timeout",
                    details={"service": self.name},
                ) from exc
            except httpx.HTTPError as exc:
                raise BadGatewayError(
                    f"{self.name} failed: {exc.__class__.__name__}",
                    code="dependency_error",
                    details={"service": self.name},
                ) from exc
            self._raise_for_status(response)
            return response
        raise AssertionError("unreachable")

    def _raise_for_status(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        downstream_details: dict[str, Any] = {}
        try:
            err = response.json()["error"]
            code, message = str(err["code"]), str(err["message"])
            if isinstance(err.get("details"), dict):
                downstream_details = err["details"]
        except (ValueError, KeyError, TypeError, AttributeError):
            code, message = "dependency_error", response.text[:200]
        if 400 <= response.status_code < 500:
            # The downstream details (e.g. a 402's balance and amount needed) travel with the error.
            exc = AppError(message, code=code, details={**downstream_details, "service": self.name})
            exc.status_code = response.status_code
            retry_after = response.headers.get("Retry-After")
            if retry_after:
                exc.headers = {"Retry-After": retry_after}
            raise exc
        if response.status_code == 503:
            raise ServiceUnavailableError(
                f"{self.name} is unavailable: {message}",
                code="dependency_unavailable",
                details={"service": self.name, "code": code},
            )
        if response.status_code == 504:
            raise GatewayTimeoutError(
                f"{self.name} timed out: {message}",
                code="dependency_timeout",
                details={"service": self.name, "code": code},
            )
        raise BadGatewayError(
            f"{self.name} failed with {response.status_code}: {message}",
            code="dependency_error",
            details={"service": self.name, "code": code},
        )

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, **kwargs)


__all__ = ["ServiceClient", "error_body"]
