"""user-service's credits API for the services that charge users (llm-service, message-service):
reserve, commit and release with a service token carrying `credits:write`."""

from __future__ import annotations

import uuid
from typing import Any, Literal

import httpx
from pydantic import BaseModel

from chat_common.errors import AppError, BadGatewayError, ForbiddenError, PaymentRequiredError
from chat_common.http import ServiceClient
from chat_common.service_token import ServiceTokenProvider

SERVICE = "user-service"
SCOPE = "credits:write"
ACCOUNT_INACTIVE = "account_inactive"


class Reservation(BaseModel):
    """The fields of user-service's `ReservationPublic` the callers read."""

    id: uuid.UUID
    user_id: uuid.UUID
    amount: int
    committed_amount: int | None = None
    status: Literal["held", "committed", "released", "expired"]
    idempotency_key: str | None = None


def may_have_reserved(exc: BaseException) -> bool:
    """Whether a reserve that failed with `exc` may still have held credits at user-service: yes unless
    user-service answered with a refusal (a 4xx: 402, 403, 404...) or was never reached (no connection).
    A timeout, a lost connection or a 5xx leave it unknown: the request may have been carried out."""
    for error in (exc, exc.__cause__):
        if isinstance(error, AppError) and 400 <= error.status_code < 500:
            return False
        if isinstance(error, httpx.ConnectError):
            return False
    return True


class CreditsClient:
    """Typed calls to `/api/v1/credits/reservations`; every call is idempotent at user-service."""

    def __init__(self, http: ServiceClient, tokens: ServiceTokenProvider, *, caller: str) -> None:
        """`http` reaches user-service; `tokens` gives service tokens with `credits:write`; `caller` names
        the calling service in errors."""
        self.http = http
        self.tokens = tokens
        self.caller = caller

    @classmethod
    def connect(
        cls,
        base_url: str,
        *,
        caller: str,
        client_id: str,
        client_secret: str,
        timeout: float,
        connect_timeout: float,
    ) -> CreditsClient:
        """A client with its own connection and a token of just `credits:write`."""
        http = ServiceClient(SERVICE, base_url, read_timeout=timeout, connect_timeout=connect_timeout)
        tokens = ServiceTokenProvider(http, client_id=client_id, client_secret=client_secret, scopes=[SCOPE])
        return cls(http, tokens, caller=caller)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def reserve(
        self, *, user_id: str, amount: int, idempotency_key: str, reference: str, ttl_seconds: int
    ) -> Reservation:
        """Hold `amount` credits for `ttl_seconds`; a 402 carries the user's balance and the amount
        needed, a deactivated account is a 403 `account_inactive`."""
        body = {
            "user_id": user_id,
            "amount": amount,
            "idempotency_key": idempotency_key,
            "reference": reference,
            "ttl_seconds": ttl_seconds,
        }
        try:
            return await self._post("/api/v1/credits/reservations", body, passed={ACCOUNT_INACTIVE})
        except AppError as exc:
            if exc.status_code == 403 and exc.code == ACCOUNT_INACTIVE:
                raise ForbiddenError(
                    "This account is deactivated: it cannot generate", code=ACCOUNT_INACTIVE
                ) from exc
            if exc.status_code != 402:
                raise
            balance = exc.details.get("balance") if isinstance(exc.details, dict) else None
            raise PaymentRequiredError(
                f"Insufficient credits: this request needs {amount}, the balance is {balance}",
                details={"needed": amount, "balance": balance},
            ) from exc

    async def commit(self, reservation_id: uuid.UUID, amount: int) -> Reservation:
        return await self._post(f"/api/v1/credits/reservations/{reservation_id}/commit", {"amount": amount})

    async def release(self, reservation_id: uuid.UUID) -> Reservation:
        return await self._post(f"/api/v1/credits/reservations/{reservation_id}/release", None)

    async def held(self, *, older_than_seconds: int, limit: int, offset: int) -> list[Reservation]:
        """This service's reservations still held, made at least `older_than_seconds` ago, oldest first."""
        response = await self.http.get(
            "/api/v1/credits/reservations",
            params={"older_than_seconds": older_than_seconds, "limit": limit, "offset": offset},
            token=await self.tokens.token(),
        )
        return [Reservation.model_validate(item) for item in response.json()["items"]]

    async def _post(
        self, path: str, body: dict[str, Any] | None, *, passed: frozenset[str] | set[str] = frozenset()
    ) -> Reservation:
        """POST with the service token. user-service refusing this service's own credentials or request
        is a 502 (the calling service's fault, not its client's), except for the error codes in `passed`."""
        try:
            token = await self.tokens.token()
            response = await self.http.post(path, json=body, token=token, idempotent=True)
        except AppError as exc:
            if exc.status_code in (400, 401, 403, 422) and exc.code not in passed:
                raise BadGatewayError(
                    f"{SERVICE} refused {self.caller}'s credentials or request: {exc.message}",
                    code="dependency_error",
                    details={"service": SERVICE, "code": exc.code},
                ) from exc
            raise
        return Reservation.model_validate(response.json())
