"""Who pays for a generation and how much: reserve before the model call, settle once after it.

A user's direct call is paid: credits are reserved at user-service from `max_tokens` before LM
Studio is asked, the real cost is committed from the usage after, and everything is released when
the generation failed or never reached the model. A service token with `llm:generate` is served
unmetered (its caller, message-service, charges the user itself); any other service token is refused.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from app.clients.credits import CreditsClient, Reservation
from app.config import Settings
from app.services.llm import Progress
from chat_common.auth import Principal
from chat_common.errors import AppError, ForbiddenError

logger = logging.getLogger(__name__)

GENERATE_SCOPE = "llm:generate"


@dataclass(frozen=True)
class CostModel:
    """Credits for one call: `per_request`, plus `per_1k_tokens` for every 1000 generated tokens
    (rounded up); `max_tokens` is `default_max_tokens` when absent and at most `max_tokens_cap`."""

    per_request: int
    per_1k_tokens: int
    default_max_tokens: int
    max_tokens_cap: int

    @classmethod
    def from_settings(cls, settings: Settings) -> CostModel:
        return cls(
            per_request=settings.direct_cost_per_request,
            per_1k_tokens=settings.direct_cost_per_1k_tokens,
            default_max_tokens=settings.direct_default_max_tokens,
            max_tokens_cap=settings.direct_max_tokens,
        )

    def max_tokens(self, requested: Any) -> int:
        if not isinstance(requested, int) or requested <= 0:  # absent, or -1 (LM Studio: no limit)
            return self.default_max_tokens
        return min(requested, self.max_tokens_cap)

    def cost(self, tokens: int) -> int:
        return self.per_request + -(-tokens * self.per_1k_tokens // 1000)


class Charge:
    """One call's bill: nothing (unmetered), or a reservation settled exactly once."""

    def __init__(
        self,
        credits: CreditsClient | None,
        reservation: Reservation | None,
        cost: CostModel,
        pending: set[asyncio.Task[None]] | None = None,
    ) -> None:
        self._credits = credits
        self.reservation = reservation
        self._cost = cost
        self._pending = pending if pending is not None else set()
        self._settling: asyncio.Task[None] | None = None

    @classmethod
    def free(cls, cost: CostModel) -> Charge:
        return cls(None, None, cost)

    def amount_for(self, progress: Progress) -> int | None:
        """What to commit; None: release everything (failed, or never reached the model)."""
        if progress.failed or not progress.started or self.reservation is None:
            return None
        return min(self._cost.cost(progress.tokens), self.reservation.amount)

    async def settle(self, progress: Progress) -> None:
        """Commit the real cost or release; runs to the end even if the caller is cancelled meanwhile."""
        if self.reservation is None:
            return
        if self._settling is None:
            self._settling = asyncio.ensure_future(self._settle(self.reservation, self.amount_for(progress)))
            self._pending.add(self._settling)  # kept alive (and awaited at shutdown) even if we are cancelled
            self._settling.add_done_callback(self._pending.discard)
        await asyncio.shield(self._settling)

    async def _settle(self, reservation: Reservation, amount: int | None) -> None:
        assert self._credits is not None
        try:
            if amount is None:
                await self._credits.release(reservation.id)
            else:
                await self._credits.commit(reservation.id, amount)
        except AppError as exc:
            if amount is None or not _expired(exc):
                _log_unsettled(reservation, amount)
                return
            # The call outlasted its reservation: user-service has given the credits back already, and
            # nothing can charge them now. Loud, so a lifetime too short for the timeouts gets noticed.
            logger.error(
                "credit reservation %s of user %s expired before it was committed: %d credits were not "
                "charged (the reservation lifetime is shorter than this call took)",
                reservation.id,
                reservation.user_id,
                amount,
            )
        except Exception:
            _log_unsettled(reservation, amount)


def _expired(exc: AppError) -> bool:
    return exc.status_code == 409 and isinstance(exc.details, dict) and exc.details.get("status") == "expired"


def _log_unsettled(reservation: Reservation, amount: int | None) -> None:
    # user-service releases an unsettled reservation when its lifetime runs out
    logger.exception(
        "could not %s credit reservation %s; user-service will expire it",
        "release" if amount is None else f"commit {amount} credits of",
        reservation.id,
    )


class Meter:
    """Decides who pays for a call and opens its Charge (402 and 503 arise here, before any model call)."""

    def __init__(self, credits: CreditsClient, cost: CostModel, *, reservation_ttl: int) -> None:
        self.credits = credits
        self.cost = cost
        self.reservation_ttl = reservation_ttl  # seconds: as long as a call may take, and settling it
        self._settling: set[asyncio.Task[None]] = set()

    async def drain(self) -> None:
        """Wait for the settlements still in flight (at shutdown, before the credits client closes)."""
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)

    async def open(
        self, principal: Principal, *, kind: str, payload: dict[str, Any]
    ) -> tuple[Charge, dict[str, Any]]:
        """The Charge, and the payload to send (for a user: `max_tokens` set within the cap)."""
        if principal.is_service:
            if GENERATE_SCOPE not in principal.scopes:
                raise ForbiddenError(f"A service token needs the scope {GENERATE_SCOPE} to generate")
            return Charge.free(self.cost), payload
        if kind == "embeddings":
            amount = self.cost.per_request
        else:
            payload = {**payload, "max_tokens": self.cost.max_tokens(payload.get("max_tokens"))}
            amount = self.cost.cost(payload["max_tokens"])
        if amount <= 0:
            return Charge.free(self.cost), payload
        request_id = uuid.uuid4().hex  # a fresh key per call: a repeated X-Request-ID is never a free replay
        reservation = await self.credits.reserve(
            user_id=principal.user_id,
            amount=amount,
            idempotency_key=f"llm-service:{request_id}",
            reference=f"llm-service {kind} {request_id}",
            ttl_seconds=self.reservation_ttl,
        )
        return Charge(self.credits, reservation, self.cost, self._settling), payload
