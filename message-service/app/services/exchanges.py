"""Waiting for a reply to finish (plain sends), and impersonation (a suggestion, not stored)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from typing import Any

from app.core.runtime import Runtime
from app.models import Message
from app.schemas.message import Exchange, GenerationOptions, MessagePublic, Suggestion, public
from app.services import access, history, prompting, sending
from app.services.events import GONE
from chat_common.errors import AppError, NotFoundError


async def finished_exchange(rt: Runtime, reply: Message) -> Exchange:
    """The reply once its job has ended, with the user message it answers; a reply that failed is
    its error (status and code of the failing dependency), naming the stored messages."""
    task = rt.jobs.get(str(reply.id))
    error: AppError | None = None
    if task is not None:
        # shield: a client that leaves cancels this wait, never the job
        with contextlib.suppress(asyncio.CancelledError):
            error = await asyncio.shield(task)
    stored = await rt.messages.get(reply.id)  # type: ignore[arg-type]
    if stored is None:  # purged with its deleted conversation, or deleted, while it was generated
        raise await _gone(rt, reply)
    conversation = {
        "id": stored.conversation_id,
        "user_id": stored.user_id,
        "character_id": stored.character_id,
    }
    tree = await history.load_tree(rt, conversation)
    parent = tree.get(stored.parent_id) if stored.parent_id else None
    user_message = public(parent, tree) if parent is not None and parent.role == "user" else None
    if error is not None or stored.status == "failed":
        raise _failure(stored, user_message, error)
    return Exchange(user_message=user_message, reply=public(tree.by_id[str(stored.id)], tree))


async def _gone(rt: Runtime, reply: Message) -> NotFoundError:
    try:
        await access.conversation(rt, reply.conversation_id, reply.user_id)
    except NotFoundError:
        return NotFoundError(GONE["message"], code=GONE["code"])
    return history.message_not_found()


def _failure(reply: Message, user_message: MessagePublic | None, error: AppError | None) -> AppError:
    generation = reply.generation
    known = error.details if error is not None else generation.error_details if generation else None
    details = dict(known) if isinstance(known, dict) else {}
    details.update(reply_id=str(reply.id), user_message_id=user_message.id if user_message else None)
    failure = AppError(
        generation.error_message if generation and generation.error_message else "The reply failed",
        code=generation.error_code if generation and generation.error_code else "generation_failed",
        details=details,
        headers=error.headers if error is not None else None,
    )
    failure.status_code = error.status_code if error is not None else 502
    return failure


async def impersonate(rt: Runtime, conversation: dict[str, Any], options: GenerationOptions) -> Suggestion:
    """Generate the user's next message as their persona; paid like a reply, stored nowhere. It takes a
    place among the user's running generations like a reply (429 past the cap)."""
    user_id, job_id = conversation["user_id"], f"impersonate:{uuid.uuid4().hex}"
    settings = rt.settings
    cap, lease = settings.max_concurrent_generations, settings.job_lease_seconds
    if not await rt.live.take_generation_slot(user_id, job_id, cap, lease):
        raise sending.too_many_generations(rt)
    try:
        return await _impersonate(rt, conversation, options, job_id)
    finally:
        await rt.live.free_generation_slot(user_id, job_id)


async def _impersonate(
    rt: Runtime, conversation: dict[str, Any], options: GenerationOptions, job_id: str
) -> Suggestion:
    _, path = await history.active_path(rt, conversation)
    character = await access.character(rt, conversation["character_id"])
    chosen = sending.generation_options(rt, options)
    payload, _ = await prompting.payload(rt, conversation, character, path, chosen, impersonating=True)
    reserved = sending.reserved_for(rt, chosen)
    hold = {
        "user_id": conversation["user_id"],
        "amount": reserved,
        "idempotency_key": job_id,
        "reference": f"message-service impersonation in {conversation['id']}",
        "ttl_seconds": rt.settings.reply_reservation_seconds,
    }
    reservation = await sending.reserve(rt, hold)
    text: list[str] = []
    tokens = 0
    try:
        async for chunk in rt.fleet.stream_chat(payload):
            for choice in chunk.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if isinstance(piece, str):
                    text.append(piece)
            if isinstance(chunk.get("usage"), dict):
                tokens = int(chunk["usage"].get("completion_tokens") or 0)
    except BaseException as exc:
        released = sending.release(rt, reservation.id)
        if isinstance(exc, AppError):
            await released
        else:  # the client left (cancelled): released apart from the request
            rt.spawn(released)
        raise
    cost = min(
        reserved, rt.settings.cost_per_message + math.ceil(tokens * rt.settings.cost_per_1k_tokens / 1000)
    )
    await sending.commit(rt, reservation.id, cost)
    return Suggestion(content="".join(text).strip(), cost=cost)
