"""Who pays for a generation and how much: reserve before the model call, settle once after it.

A user's direct call is paid: credits are reserved at user-service from `max_tokens` before LM
Studio is asked, the real cost is committed from the usage after, and everything is released when
the generation failed or never reached the model. A service token with `llm:generate` is served
unmetered (its caller, message-service, charges the user itself); any other service token is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from app.config import Settings
from app.services.llm import Progress
from chat_common.auth import Principal
from chat_common.credits import CreditsClient, Reservation, may_have_reserved
from chat_common.errors import AppError, ForbiddenError

logger = logging.getLogger(__name__)

GENERATE_SCOPE = "llm:generate"
# A reserve interrupted without an answer is released in the background: this many attempts, waiting
# 0.5 s, 1 s, 2 s... between them; after that user-service expires the reservation at its lifetime.
GIVE_BACK_ATTEMPTS = 6
GIVE_BACK_BACKOFF_SECONDS = 0.5

T = TypeVar("T")


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
        pending: set[asyncio.Task[Any]] | None = None,
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


@dataclass(frozen=True)
class Hold:
    """One reserve request; sent again as is (the same idempotency key) it names the same reservation."""

    user_id: str
    amount: int
    idempotency_key: str
    reference: str
    ttl_seconds: int


class Meter:
    """Decides who pays for a call and opens its Charge (402 and 503 arise here, before any model call).

    Nothing stays held for a call that did not get its reservation: a reserve whose caller left (the
    client disconnected) runs on, shielded, and what it holds is released; one that failed without a
    clear answer (a timeout, a lost connection, a 5xx) may have been carried out at user-service, so
    it is sent again with the same key (user-service answers with the reservation it made, if any)
    and released, a few times with backoff. These tasks, like the settlements, are awaited at shutdown."""

    def __init__(
        self,
        credits: CreditsClient,
        cost: CostModel,
        *,
        reservation_ttl: int,
        give_back_attempts: int = GIVE_BACK_ATTEMPTS,
        give_back_backoff: float = GIVE_BACK_BACKOFF_SECONDS,
    ) -> None:
        self.credits = credits
        self.cost = cost
        self.reservation_ttl = reservation_ttl  # seconds: as long as a call may take, and settling it
        self.give_back_attempts = give_back_attempts
        self.give_back_backoff = give_back_backoff
        self._pending: set[asyncio.Task[Any]] = set()
        self._closing = asyncio.Event()

    async def drain(self) -> None:
        """Wait for the settlements and give-backs still in flight (at shutdown, before the credits
        client closes); a give-back waiting to retry makes one last attempt at once."""
        self._closing.set()
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    def _track(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run `work` to its end whatever happens to the request that started it."""
        task = asyncio.ensure_future(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

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
        hold = Hold(
            user_id=principal.user_id,
            amount=amount,
            idempotency_key=f"llm-service:{request_id}",
            reference=f"llm-service {kind} {request_id}",
            ttl_seconds=self.reservation_ttl,
        )
        reserving = self._track(self._reserve(hold))
        try:
            reservation = await asyncio.shield(reserving)  # the client leaving does not cut it short
        except BaseException:
            self._track(self._give_back(hold, reserving))  # cancelled or failed: nothing may stay held
            raise
        return Charge(self.credits, reservation, self.cost, self._pending), payload

    async def _reserve(self, hold: Hold) -> Reservation:
        return await self.credits.reserve(
            user_id=hold.user_id,
            amount=hold.amount,
            idempotency_key=hold.idempotency_key,
            reference=hold.reference,
            ttl_seconds=hold.ttl_seconds,
        )

    async def _give_back(self, hold: Hold, reserving: asyncio.Task[Reservation]) -> None:
        """Release whatever the reserve of a call that will not use it holds."""
        reservation: Reservation | None = None
        try:
            reservation = await reserving
        except Exception as exc:
            if not may_have_reserved(exc):
                return  # user-service refused (402, 403...) or was never reached: nothing is held
        delay = self.give_back_backoff
        for attempt in range(1, self.give_back_attempts + 1):
            try:
                if reservation is None:  # the answer was lost: ask again, with the same key
                    reservation = await self._reserve(hold)
                await self.credits.release(reservation.id)
            except Exception as exc:
                if reservation is None and not may_have_reserved(exc):
                    return
                logger.warning(
                    "could not give back the credits of call %s (attempt %d of %d): %s",
                    hold.idempotency_key,
                    attempt,
                    self.give_back_attempts,
                    exc,
                )
                if attempt < self.give_back_attempts and not self._closing.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._closing.wait(), delay)
                    delay *= 2
                continue
            logger.info(
                "released credit reservation %s of user %s (%d credits): its call ended before using it",
                reservation.id,
                hold.user_id,
                hold.amount,
            )
            return
        logger.error(
            "gave up releasing the credits of call %s of user %s (%d credits) after %d attempts; "
            "user-service will expire its reservation",
            hold.idempotency_key,
            hold.user_id,
            hold.amount,
            self.give_back_attempts,
        )
