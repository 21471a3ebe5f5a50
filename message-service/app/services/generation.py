"""Generation jobs: a reply generated apart from the HTTP request that asked for it.

Its pieces go to a Redis stream (any replica can stream them), a lease renewed while it runs tells
the sweeper it is alive, and its end is written once (a conditional update from `generating`), then
paid: the reservation is committed with the real cost (of a reply that failed midway, of the part
generated before the failure, which it keeps), or released when it failed before generating any.

The job keeps the reply's text in memory and stores it in MongoDB at its end; Redis only carries it to
its readers. A Redis outage therefore never fails a reply (its readers tell its end from MongoDB), and
a MongoDB outage at its end is waited out for as long as its lease lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from app.core.runtime import Runtime, now
from app.models import Message, Usage
from app.models.message import Status
from app.schemas.message import public
from app.services import bookkeeping, followups, prompting
from app.services.events import GONE
from app.services.pieces import PiecePublisher
from app.services.prompt import parse_context_overflow
from chat_common.errors import AppError, ServiceUnavailableError
from chat_common.mongo import UNAVAILABLE as _MONGODB_ERRORS
from chat_common.redis import UNAVAILABLE as _REDIS_ERRORS

logger = logging.getLogger(__name__)

STOP_CHECK_SECONDS = 0.2
STORE_RETRY_SECONDS = (0.25, 2.0)  # the first and the longest wait before storing a reply's end again


@dataclass
class Job:
    conversation: dict[str, Any]
    reply: Message
    payload: dict[str, Any]
    lock_token: str
    prefix: str = ""  # the text a continued reply already had
    resumed_status: Status | None = None  # the status a continued reply had
    estimated_tokens: int = 0  # the prompt's estimate, to calibrate the estimator by LM Studio's count
    model_key: str = "default"
    # Builds the request again within a smaller context (LM Studio: "context length of only N tokens").
    rebuild: Callable[[int], Awaitable[tuple[dict[str, Any], int]]] | None = None
    parent: Message | None = None  # the message the reply answers, for its follow-ups
    started: float = field(default_factory=time.monotonic)
    # The reply's `message.created` event (and active leaf) being written: no piece and no end of the
    # reply goes to its stream before it (its failure fails the reply before any piece).
    ready: asyncio.Future[Any] | None = None


def cost_of(rt: Runtime, completion_tokens: int) -> int:
    settings = rt.settings
    return settings.cost_per_message + math.ceil(completion_tokens * settings.cost_per_1k_tokens / 1000)


@dataclass
class _Progress:
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    first_token_ms: int | None = None
    finish_reason: str | None = None
    model: str | None = None
    usage: Usage | None = None
    pieces: int = 0


async def run(rt: Runtime, job: Job) -> AppError | None:
    """Generate, store, pay, tell the others; whatever happens, end the reply and free its locks.
    Returns the error that failed the reply (None when it completed or was stopped)."""
    reply_id = str(job.reply.id)
    progress = _Progress()
    status: Status = "completed"
    error: AppError | None = None
    interrupted = False
    ended = asyncio.Event()
    keeper = asyncio.ensure_future(_keep_alive(rt, job, ended))
    try:
        try:
            status = await _generate(rt, job, progress)
        except AppError as exc:
            context = _overflow(exc) if progress.pieces == 0 and job.rebuild else None
            if context is None or job.rebuild is None:
                raise
            job.payload, job.estimated_tokens = await job.rebuild(context)
            status = await _generate(rt, job, progress)
    except AppError as exc:
        status, error = "failed", exc
    except Exception as exc:  # a backend lost, a bug: the reply fails, nothing is lost
        logger.exception("generation %s failed", reply_id)
        status, error = "failed", _unexpected(exc)
    except asyncio.CancelledError:  # the process is shutting down: end it now, not when its lease expires
        interrupted = True
        status, error = "failed", AppError(bookkeeping.LOST_MESSAGE, code=bookkeeping.LOST)
    finally:
        # told to stop, never cancelled: a renewal cut off inside a Redis command could leave its
        # connection unusable for the next user of the pool (what a cancelled keeper did under load)
        ended.set()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.shield(keeper)
    if job.ready is not None:  # it ended before its first piece: its end still comes after its start
        with contextlib.suppress(Exception):
            await job.ready
    stored: Message | None = None
    try:
        stored = await _finish(rt, job, progress, status, error)
    finally:
        # Freed as soon as the end is stored, before it is told: a client that has the end can send
        # at once (no 409), and the next send need not wait for the bookkeeping.
        await _end_generation(rt, job)
    if stored is not None:
        await _publish_end(rt, stored, error)
        await _bookkeeping(rt, job, progress, stored)
    if interrupted:
        raise asyncio.CancelledError
    return error


async def _redis_best_effort(call: Awaitable[object], what: str, reply_id: str) -> None:
    """A Redis step whose loss the reply survives (its end is in MongoDB; locks expire): logged."""
    try:
        await call
    except _REDIS_ERRORS as exc:
        logger.warning("reply %s: %s, Redis is away (%s)", reply_id, what, exc.__class__.__name__)


async def _end_generation(rt: Runtime, job: Job) -> None:
    """Free the reply's lock and place. With Redis away, tried again (apart from the job) until it is
    back: a Redis that kept its data would otherwise hold the conversation's lock until its lease
    expires, refusing the next send with 409 meanwhile."""
    reply_id = str(job.reply.id)
    end = functools.partial(
        rt.live.end_generation, job.conversation["id"], job.lock_token, job.reply.user_id, reply_id
    )
    try:
        await end()
    except _REDIS_ERRORS as exc:
        logger.warning(
            "reply %s: lock not released yet, Redis is away (%s)", reply_id, exc.__class__.__name__
        )
        rt.spawn(_until_redis_answers(end, rt.settings.job_lease_seconds))


async def _until_redis_answers(call: Callable[[], Awaitable[object]], within: float) -> None:
    """`call` tried every second until Redis answers it, for `within` seconds at most."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        with contextlib.suppress(*_REDIS_ERRORS):
            await call()
            return


def _unexpected(exc: Exception) -> AppError:
    """The error a reply fails with on an exception that is not an AppError: a lost backend is a 503
    naming it, anything else a 500."""
    for errors, service in ((_REDIS_ERRORS, "redis"), (_MONGODB_ERRORS, "mongodb")):
        if isinstance(exc, errors):
            return ServiceUnavailableError(
                f"Generation failed: {service} is unavailable",
                code="dependency_unavailable",
                details={"service": service},
            )
    return AppError(f"Generation failed: {exc.__class__.__name__}", code="internal_error")


async def _generate(rt: Runtime, job: Job, progress: _Progress) -> Status:
    """Stream the reply until it ends, or until a stop is asked, whether pieces are arriving or not
    (a stop during a long prompt processing does not wait for the first token).

    Neither task is ever cancelled inside a Redis call (those are shielded or waited for): a command
    cancelled midway can leave the connection pool's state behind it unusable."""
    ended = asyncio.Event()
    streaming = asyncio.ensure_future(_stream(rt, job, progress))
    watching = asyncio.ensure_future(_stop_asked(rt, str(job.reply.id), ended))
    try:
        await asyncio.wait({streaming, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ended.set()
        streaming.cancel()  # when still running: stopped (the request to llm-service is closed)
        await asyncio.wait({streaming, watching})
    if not streaming.cancelled():
        return streaming.result()  # it ended on its own (or failed: raised here)
    return "stopped"


async def _stream(rt: Runtime, job: Job, progress: _Progress) -> Status:
    reply_id = str(job.reply.id)
    stream = rt.fleet.stream_chat(job.payload)
    pieces = PiecePublisher(rt.live, reply_id)  # merges the pieces that come faster than Redis takes them
    status: Status = "completed"
    try:
        async for chunk in stream:
            if job.ready is not None:  # raises what failed it: the reply fails before any piece
                ready, job.ready = job.ready, None
                await ready
            _take(chunk, progress)
            for name, text in _pieces(chunk):
                if progress.first_token_ms is None:
                    progress.first_token_ms = int((time.monotonic() - job.started) * 1000)
                (progress.text if name == "delta" else progress.reasoning).append(text)
                progress.pieces += 1
                pieces.add(name, text)
        await pieces.flush()  # every piece is in the stream before the reply's end is
    except BaseException:
        # Failed, or cancelled by a stop: what was generated still reaches the stream, first.
        with contextlib.suppress(Exception):
            await asyncio.shield(pieces.flush())
        raise
    finally:
        await stream.aclose()  # closing it closes the request to llm-service, which stops LM Studio
    return status


async def _stop_asked(rt: Runtime, reply_id: str, ended: asyncio.Event) -> None:
    """Returns once a stop of the reply is asked (from any replica: a flag in Redis), or once
    `ended` is set."""
    while not ended.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ended.wait(), STOP_CHECK_SECONDS)
            return
        with contextlib.suppress(Exception):  # Redis away a moment: the next check tells
            if await rt.live.stop_requested(reply_id):
                return


def _overflow(exc: AppError) -> int | None:
    """The context LM Studio says it has, when it refused the prompt as too long."""
    if exc.code not in ("context_length_exceeded", "llm_error"):
        return None
    return parse_context_overflow(exc.message)


def _take(chunk: dict[str, Any], progress: _Progress) -> None:
    progress.model = chunk.get("model") or progress.model
    for choice in chunk.get("choices") or []:
        progress.finish_reason = choice.get("finish_reason") or progress.finish_reason
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        progress.usage = Usage(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )


def _pieces(chunk: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            found.append(("reasoning", reasoning))
        if isinstance(delta.get("content"), str) and delta["content"]:
            found.append(("delta", delta["content"]))
    return found


async def _purged(rt: Runtime, reply: Message) -> None:
    """The reply's conversation was deleted and its messages purged while it generated: it is not
    paid, and whoever streams it hears so."""
    await bookkeeping.release_purged(rt, reply)
    await rt.live.publish_end(str(reply.id), "error", GONE, rt.settings.stream_retention_seconds)


async def _keep_alive(rt: Runtime, job: Job, ended: asyncio.Event) -> None:
    """Renew the lease (MongoDB), the conversation lock and the user's slot (Redis) until `ended`."""
    lease = rt.settings.job_lease_seconds
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ended.wait(), lease / 3)
            return
        with contextlib.suppress(Exception):  # a missed renewal is retried; the lease is long enough
            await rt.messages.renew_lease(job.reply.id, now() + timedelta(seconds=lease))  # type: ignore[arg-type]
            await rt.live.renew_conversation_lock(job.conversation["id"], job.lock_token, lease)
            await rt.live.renew_generation_slot(job.reply.user_id, str(job.reply.id), lease)


async def _finish(
    rt: Runtime, job: Job, progress: _Progress, status: Status, error: AppError | None
) -> Message | None:
    """The reply's end stored; the stored reply (None when it was ended elsewhere)."""
    reply = job.reply
    assert reply.id is not None and reply.generation is not None
    generated = "".join(progress.text)
    tokens = progress.usage.completion_tokens if progress.usage else 0
    if not tokens and progress.pieces:
        tokens = progress.pieces  # LM Studio sends about one token a piece when it reports no usage
    # Paid: what was generated. A reply that failed after some pieces keeps them and pays for them
    # like a stopped one ("partial: only the generated part"); one that failed before any is released.
    # A stop before the first piece pays nothing either, nor a reply lost with its process (as the
    # sweeper would release it).
    lost = error is not None and error.code == bookkeeping.LOST
    paid = status == "completed" or (progress.pieces > 0 and not lost)
    cost = min(cost_of(rt, tokens), reply.generation.reserved) if paid else 0
    generation = reply.generation.model_copy(
        update={
            "model": progress.model or reply.generation.model,
            "usage": progress.usage or Usage(completion_tokens=tokens),
            "latency_ms": int((time.monotonic() - job.started) * 1000),
            "first_token_ms": progress.first_token_ms,
            "finish_reason": "stop_requested" if status == "stopped" else progress.finish_reason,
            "error_code": error.code if error else None,
            "error_message": error.message if error else None,
            "error_details": error.details if error and isinstance(error.details, dict) else None,
            "cost": cost,
            "spent": reply.generation.spent + cost,
            "credits": "commit_pending" if paid else "release_pending",
        }
    )
    if status == "failed" and job.resumed_status is not None and not progress.pieces:
        # A continuation that failed before adding anything leaves the reply as it was (its error
        # noted): a completed reply does not become a failed one, dropped from later prompts.
        status = job.resumed_status
    stored = await _store_end(
        rt,
        reply,
        status=status,
        content=job.prefix + generated,
        reasoning="".join(progress.reasoning) or reply.reasoning,
        generation=generation,
    )
    if stored is None:
        if await rt.messages.get(reply.id) is None:  # its conversation was deleted and purged meanwhile
            await _purged(rt, reply)
        return None  # else the sweeper ended it first (its lease had expired) and settled it
    return stored


async def _publish_end(rt: Runtime, stored: Message, error: AppError | None) -> None:
    """The stored reply's end told to its readers, before the bookkeeping: a client is not kept
    waiting on it."""
    if error is not None:
        details = error.details if isinstance(error.details, dict) else None
        end = ("error", {"code": error.code, "message": error.message, "details": details})
    else:
        end = ("message.completed", public(stored).model_dump(mode="json"))
    await _redis_best_effort(
        rt.live.publish_end(str(stored.id), *end, rt.settings.stream_retention_seconds),
        "end not streamed (its readers read it from MongoDB)",
        str(stored.id),
    )


async def _store_end(rt: Runtime, reply: Message, **end: Any) -> Message | None:
    """`messages.finish`, tried again while MongoDB is away, for as long as the job's lease (last
    renewed at most a third of it ago) keeps the sweeper off the reply: the text is only in memory.
    A retry after a first try that was stored finds the reply ended: None, as when the sweeper ended
    it (the stored reply's pending credits and follow-ups are then the sweeper's)."""
    assert reply.id is not None
    deadline = time.monotonic() + rt.settings.job_lease_seconds * 2 / 3
    delay, longest = STORE_RETRY_SECONDS
    while True:
        try:
            return await rt.messages.finish(reply.id, at=now(), **end)
        except _MONGODB_ERRORS as exc:
            if time.monotonic() + delay > deadline:
                raise
            logger.warning("reply %s not stored yet, MongoDB is away (%s)", reply.id, exc.__class__.__name__)
        await asyncio.sleep(delay)
        delay = min(delay * 2, longest)


async def _bookkeeping(rt: Runtime, job: Job, progress: _Progress, stored: Message) -> None:
    """The other services told (with the next follow-up batch), credits settled and the estimator
    calibrated, at once: each is independent of the others (and retried by the sweeper when it fails)."""
    followups.queue(rt, stored, job.parent)
    steps: list[Awaitable[object]] = [bookkeeping.settle(rt, stored)]
    if progress.usage and progress.usage.prompt_tokens:
        steps.append(_calibrate(rt, job, progress.usage.prompt_tokens))
    try:
        await asyncio.gather(*steps)
    except _MONGODB_ERRORS as exc:  # the settled credits not recorded: the sweeper settles them again
        logger.warning("reply %s: credits state not stored, MongoDB is away (%s)", stored.id, exc)


async def _calibrate(rt: Runtime, job: Job, prompt_tokens: int) -> None:
    with contextlib.suppress(Exception):  # calibration is a refinement, never a failure
        await prompting.calibration(rt).record(job.model_key, job.estimated_tokens, prompt_tokens)
