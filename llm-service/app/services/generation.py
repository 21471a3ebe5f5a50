"""Paid generation: the Meter opens a charge, LM Studio answers, the charge is settled from the progress."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from app.services.llm import ChunkStream, LLMService, Progress
from app.services.metering import Charge, Meter
from chat_common.auth import Principal

T = TypeVar("T")


class GenerationService:
    """Chat, text completion and embeddings for a caller, each billed through the Meter."""

    def __init__(self, llm: LLMService, meter: Meter) -> None:
        self.llm = llm
        self.meter = meter

    async def generate(self, principal: Principal, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        charge, payload = await self.meter.open(principal, kind=kind, payload=payload)
        return await _settled(charge, lambda progress: self.llm.generate(kind, payload, progress))

    async def embeddings(self, principal: Principal, payload: dict[str, Any]) -> dict[str, Any]:
        charge, payload = await self.meter.open(principal, kind="embeddings", payload=payload)
        return await _settled(charge, lambda progress: self.llm.embeddings(payload, progress))

    async def open_stream(self, principal: Principal, kind: str, payload: dict[str, Any]) -> ChunkStream:
        """A stream whose charge is settled when it closes: the usage, or the chunks generated before
        the client left; released if LM Studio failed."""
        charge, payload = await self.meter.open(principal, kind=kind, payload=payload)
        progress = Progress()
        try:
            stream = await self.llm.open_stream(kind, payload, progress)
        except BaseException as exc:
            await _settle_after(charge, progress, exc)
            raise
        stream.on_close(lambda: charge.settle(progress))
        return stream


async def _settled(charge: Charge, call: Callable[[Progress], Awaitable[T]]) -> T:
    progress = Progress()
    try:
        result = await call(progress)
    except BaseException as exc:
        await _settle_after(charge, progress, exc)
        raise
    await charge.settle(progress)
    return result


async def _settle_after(charge: Charge, progress: Progress, exc: BaseException) -> None:
    """A cancellation is the client leaving (it pays what was generated); anything else is a failure."""
    if not isinstance(exc, asyncio.CancelledError):
        progress.failed = True
    await charge.settle(progress)
