"""Starting a reply: limits, the conversation lock, credits reserved, messages stored, job started.

Used by send, regenerate and continue. Whatever fails before the job starts gives back what was
taken (reservation, lock, slot); nothing is stored unless the job starts.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from beanie import PydanticObjectId

from app.core.runtime import Runtime, now
from app.models import Generation, Message
from app.schemas.message import GenerationOptions, public
from app.services import access, bookkeeping, generation, history, prompting
from app.services.history import message_not_found, new_message
from app.services.tree import Tree
from chat_common.credits import Reservation, may_have_reserved
from chat_common.errors import (
    AppError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    ServiceUnavailableError,
    UnprocessableError,
)

logger = logging.getLogger(__name__)


def generation_options(rt: Runtime, options: GenerationOptions) -> dict[str, Any]:
    settings = rt.settings
    chosen: dict[str, Any] = {
        "model": options.model or settings.default_model,
        "temperature": settings.default_temperature if options.temperature is None else options.temperature,
        "max_tokens": min(options.max_tokens or settings.default_max_tokens, settings.max_tokens_limit),
    }
    if options.top_p is not None:
        chosen["top_p"] = options.top_p
    if options.stop:
        chosen["stop"] = list(options.stop)
    return chosen


def check_length(rt: Runtime, content: str) -> None:
    """422 past MAX_MESSAGE_CHARS."""
    if len(content) > rt.settings.max_message_chars:
        raise UnprocessableError(f"content: at most {rt.settings.max_message_chars} characters")


async def check_message_limit(rt: Runtime, user_id: str) -> dict[str, str]:
    """429 past MESSAGES_PER_MINUTE; the X-RateLimit-* headers either way."""
    allowed, remaining, reset = await rt.live.hit_message_limit(user_id)
    headers = {
        "X-RateLimit-Limit": str(rt.settings.messages_per_minute),
        "X-RateLimit-Remaining": str(max(0, remaining)),
        "X-RateLimit-Reset": str(reset),
    }
    if not allowed:
        retry_after = max(1, reset - int(now().timestamp()))
        raise RateLimitedError(
            f"At most {rt.settings.messages_per_minute} messages a minute",
            retry_after=retry_after,
            headers={**headers, "Retry-After": str(retry_after)},
        )
    return headers


def too_many_generations(rt: Runtime) -> RateLimitedError:
    return RateLimitedError(
        f"At most {rt.settings.max_concurrent_generations} replies generating at once",
        retry_after=2,
        code="too_many_generations",
    )


async def send(
    rt: Runtime,
    *,
    conversation: dict[str, Any],
    parent_id: str | None,
    content: str,
    options: GenerationOptions,
) -> tuple[Message | None, Message]:
    """Store the user's message under `parent_id` (default: the active leaf) and start its reply. The
    tree is read under the conversation's lock, where no delete runs, so the parent found stays."""
    reply_id = PydanticObjectId()
    chosen = generation_options(rt, options)
    lock = await _lock(rt, conversation, reply_id)
    # the credits are asked for while the tree and the character are read
    reserving, store_by = _reserve_early(rt, conversation, chosen, reply_id, None)
    try:
        (tree, path), character = await asyncio.gather(
            history.active_path(rt, conversation), access.character(rt, conversation["character_id"])
        )
        # no parent: the conversation is empty (a character without greetings) and this is its first root
        parent = tree.get(parent_id) if parent_id else (path[-1] if path else None)
        if parent is None and parent_id:
            raise NotFoundError("parent_id: no such message in this conversation", code="message_not_found")
        return await _reserve_and_start(
            rt,
            conversation,
            character,
            tree,
            parent,
            content,
            chosen,
            reply_id,
            lock,
            reserving,
            store_by,
            None,
        )
    except BaseException as exc:
        await _give_up(rt, reserving, exc)
        await rt.live.end_generation(conversation["id"], lock, conversation["user_id"], str(reply_id))
        raise


async def start_reply(
    rt: Runtime,
    *,
    conversation: dict[str, Any],
    tree: Tree,
    parent: Message | None,
    user_content: str | None,
    options: GenerationOptions,
    continue_of: Message | None = None,
) -> tuple[Message | None, Message]:
    """Reserve, store the user message (when `user_content`) and the reply, start the job. The reply
    answers `parent` (or, continuing, extends `continue_of`) of `tree`, read before the lock; a user
    message without a parent is a root (a character without greetings)."""
    reply_id = continue_of.id if continue_of else PydanticObjectId()
    assert reply_id is not None
    chosen = generation_options(rt, options)
    lock = await _lock(rt, conversation, reply_id)
    reserving, store_by = _reserve_early(rt, conversation, chosen, reply_id, continue_of)
    try:
        # under the lock no delete runs: a parent deleted since the tree was read stays deleted
        found, character = await asyncio.gather(
            rt.messages.get_by_str(str(parent.id)) if parent is not None else _nothing(),
            access.character(rt, conversation["character_id"]),
        )
        if parent is not None and found is None:
            raise message_not_found()
        return await _reserve_and_start(
            rt,
            conversation,
            character,
            tree,
            parent,
            user_content,
            chosen,
            reply_id,
            lock,
            reserving,
            store_by,
            continue_of,
        )
    except BaseException as exc:
        await _give_up(rt, reserving, exc)
        await rt.live.end_generation(conversation["id"], lock, conversation["user_id"], str(reply_id))
        raise


def _reserve_early(
    rt: Runtime,
    conversation: dict[str, Any],
    chosen: dict[str, Any],
    reply_id: PydanticObjectId,
    continue_of: Message | None,
) -> tuple[asyncio.Future[Reservation], float]:
    """The reply's credits reserved at user-service (keyed by the reply, or by this attempt to continue
    it), asked for at once: the reads that follow run meanwhile. Whatever fails after it gives it up
    (`_give_up`). A continuation's key is new on every attempt: one that failed before the reply
    changed (an unknown model) released its reservation, and the same key again would be given that
    released reservation back, the continuation generated and its commit refused forever.

    Also the loop time by which the reply must be stored (`_check_store_by`): half the grace after
    which the sweeper takes a reservation nothing stored for an orphan (`bookkeeping.release_orphans`),
    counted from before the reservation was asked for, so from before user-service made it."""
    key = f"reply:{reply_id}" if continue_of is None else f"continue:{reply_id}:{uuid.uuid4().hex}"
    hold = {
        "user_id": conversation["user_id"],
        "amount": reserved_for(rt, chosen),
        "idempotency_key": key,
        "reference": f"message-service reply {reply_id}",
        "ttl_seconds": rt.settings.reply_reservation_seconds,
    }
    store_by = asyncio.get_running_loop().time() + rt.settings.orphaned_reservation_grace_seconds / 2
    return asyncio.ensure_future(reserve(rt, hold)), store_by


def _check_store_by(store_by: float) -> None:
    """503 when the reply could not be stored in time: storing it now could race the sweeper, which
    may be releasing its reservation as an orphan. The caller's `_give_up` releases it."""
    if asyncio.get_running_loop().time() > store_by:
        raise ServiceUnavailableError("Starting the reply took too long: try again")


def reserved_for(rt: Runtime, chosen: dict[str, Any]) -> int:
    """What a reply is reserved: its price at its `max_tokens`."""
    max_tokens = int(chosen["max_tokens"])
    return rt.settings.cost_per_message + math.ceil(max_tokens * rt.settings.cost_per_1k_tokens / 1000)


async def _give_up(rt: Runtime, reserving: asyncio.Future[Reservation], exc: BaseException) -> None:
    """The reply will not start: its reservation released once made (a refused or lost reserve holds
    nothing, or is given back by `reserve`). A client that left has its release made apart."""
    if isinstance(exc, asyncio.CancelledError):
        rt.spawn(_release_when_made(rt, reserving))
    else:
        await _release_when_made(rt, reserving)


async def _release_when_made(rt: Runtime, reserving: asyncio.Future[Reservation]) -> None:
    try:
        reservation = await asyncio.shield(reserving)
    except (AppError, asyncio.CancelledError):
        return
    await release(rt, reservation.id)


async def _lock(rt: Runtime, conversation: dict[str, Any], reply_id: PydanticObjectId) -> str:
    """The conversation's generation lock and a place among the user's running generations (409 /
    429 when either is taken): the lock's token."""
    lock = await rt.live.start_generation(
        conversation["id"],
        conversation["user_id"],
        str(reply_id),
        rt.settings.max_concurrent_generations,
        rt.settings.job_lease_seconds,
    )
    if lock == 0:
        raise ConflictError(
            "A reply is already being generated in this conversation", code="generation_in_progress"
        )
    if not isinstance(lock, str):
        raise too_many_generations(rt)
    return lock


async def _reserve_and_start(
    rt: Runtime,
    conversation: dict[str, Any],
    character: dict[str, Any],
    tree: Tree,
    parent: Message | None,
    user_content: str | None,
    chosen: dict[str, Any],
    reply_id: PydanticObjectId,
    lock: str,
    reserving: asyncio.Future[Reservation],
    store_by: float,
    continue_of: Message | None,
) -> tuple[Message | None, Message]:
    if continue_of is not None:
        # its last generation's reservation must be settled before the continuation's replaces it
        await bookkeeping.settle_now(rt, continue_of)
    parent_id = str(parent.id) if parent is not None else None
    history = tree.path_to(parent_id) if parent_id else []
    user_message = None
    if user_content is not None:
        user_message = new_message(conversation, role="user", content=user_content, parent_id=parent_id)
        user_message.id = PydanticObjectId()
        history = [*history, user_message]
    continuing = continue_of is not None
    payload, prompt = await prompting.payload(
        rt, conversation, character, history, chosen, continuing=continuing
    )

    async def rebuild(context: int) -> tuple[dict[str, Any], int]:
        retried, smaller = await prompting.payload(
            rt, conversation, character, history, chosen, continuing=continuing, context=context
        )
        return retried, smaller.estimated_tokens

    reservation = await reserving  # a failure from here on releases it (the callers' `_give_up`)
    _check_store_by(store_by)
    reply = await _store(
        rt,
        conversation,
        parent,
        user_message,
        reply_id,
        chosen,
        reservation.amount,
        str(reservation.id),
        continue_of,
    )
    job = generation.Job(
        conversation=conversation,
        reply=reply,
        payload=payload,
        lock_token=lock,
        prefix=continue_of.content if continue_of else "",
        resumed_status=continue_of.status if continue_of else None,
        estimated_tokens=prompt.estimated_tokens,
        model_key=prompting.model_key(chosen),
        rebuild=rebuild,
        parent=user_message or parent,
    )
    created: dict[str, Any] = {"user_message": None}
    if user_message is not None:
        others = len(tree.children[parent_id])  # the new message is the newest of its siblings
        created["user_message"] = public(user_message, siblings=(others, others + 1)).model_dump(mode="json")
    steps: list[Awaitable[object]] = [
        rt.live.publish(str(reply.id), "message.created", {**created, "reply_id": str(reply.id)})
    ]
    if continue_of is None:  # a continued reply is the active leaf already
        steps.append(
            rt.messages.set_active_leaf(conversation["id"], conversation["user_id"], str(reply_id), now())
        )
    # The job starts now: its request to llm-service goes out while the reply's first event and the
    # active leaf are written; it waits for both before its first piece and before it ends (`ready`).
    # From here on the job owns the reservation and the lock, whatever happens to this request.
    job.ready = asyncio.ensure_future(asyncio.gather(*steps))
    rt.spawn(generation.run(rt, job), reply_id=str(reply.id))
    return user_message, reply


CREDITS_ATTEMPTS = 6  # over about a minute (1 s, doubling)


async def reserve(rt: Runtime, hold: dict[str, Any]) -> Reservation:
    """Reserve credits at user-service (`hold`: CreditsClient.reserve's arguments). When the answer
    was lost (a timeout, a 5xx), whatever it may have held is given back in the background."""
    try:
        return await rt.fleet.credits.reserve(**hold)
    except AppError as exc:
        if may_have_reserved(exc):
            rt.spawn(_until_done(f"give back {hold['idempotency_key']}", lambda: _give_back(rt, hold)))
        raise


async def _give_back(rt: Runtime, hold: dict[str, Any]) -> None:
    """Reserving again with the same idempotency key gives the reservation a lost answer may have made
    (or a refusal, 402...: nothing is held under this key), which is then released."""
    reservation = await rt.fleet.credits.reserve(**hold)
    await rt.fleet.credits.release(reservation.id)


async def release(rt: Runtime, reservation_id: uuid.UUID) -> None:
    """Release a reservation nothing stored keeps track of (its reply was never stored, or an
    impersonation), now or, when user-service cannot be told, in the background (`_tell_credits`)."""
    await _tell_credits(rt, f"release {reservation_id}", lambda: rt.fleet.credits.release(reservation_id))


async def commit(rt: Runtime, reservation_id: uuid.UUID, amount: int) -> None:
    """Commit an impersonation's reservation, as `release` does."""
    await _tell_credits(
        rt, f"commit {reservation_id}", lambda: rt.fleet.credits.commit(reservation_id, amount)
    )


async def _tell_credits(rt: Runtime, label: str, call: Callable[[], Awaitable[object]]) -> None:
    """Tried now; when user-service cannot be told, retried in the background for about a minute
    (past that, the reservation ends with its TTL at user-service)."""
    try:
        await call()
    except AppError as exc:
        if not _refused(exc):
            rt.spawn(_until_done(label, call))


async def _until_done(label: str, call: Callable[[], Awaitable[object]]) -> None:
    delay = 1.0
    for attempt in range(CREDITS_ATTEMPTS):
        if attempt:
            await asyncio.sleep(delay)
            delay *= 2
        try:
            await call()
            return
        except AppError as exc:
            if _refused(exc):
                return
            logger.warning("credits: %s not done yet (%s)", label, exc.code)


def _refused(exc: AppError) -> bool:
    """user-service answered no (a 4xx): final, retrying cannot change it."""
    return 400 <= exc.status_code < 500


async def _nothing() -> None:
    return None


async def _store(
    rt: Runtime,
    conversation: dict[str, Any],
    parent: Message | None,
    user_message: Message | None,
    reply_id: PydanticObjectId,
    chosen: dict[str, Any],
    reserved: int,
    reservation_id: str,
    continue_of: Message | None,
) -> Message:
    at = now()
    spent = continue_of.generation.spent if continue_of and continue_of.generation else 0
    generation_info = Generation(
        model=chosen.get("model"),
        reserved=reserved,
        reservation_id=reservation_id,
        credits="reserved",
        settings=chosen,
        spent=spent,
        resumed_from=continue_of.status if continue_of else None,
    )
    lease_until = at + timedelta(seconds=rt.settings.job_lease_seconds)
    if continue_of is not None:
        assert continue_of.id is not None
        if not await rt.messages.restart(
            continue_of.id, generation=generation_info, lease_until=lease_until, at=at
        ):
            raise ConflictError("This reply is being generated already", code="generation_in_progress")
        await rt.live.restart_reply(str(continue_of.id))
        stored = await rt.messages.get(continue_of.id)
        assert stored is not None
        return stored
    answered = user_message or parent
    assert answered is not None, "a reply answers a message"
    reply = new_message(
        conversation,
        role="assistant",
        content="",
        parent_id=str(answered.id),
        status="generating",
        generation=generation_info,
        lease_until=lease_until,
        with_parent=user_message is not None,
    )
    reply.id = reply_id
    await rt.messages.insert_all([user_message, reply] if user_message is not None else [reply])
    return reply
