"""A finished reply's follow-ups: its conversation's activity (each message counted once, by message
id) and its character's message counter (once per reply, by the key `exchange:<reply id>`).

Replies are told in batches: one call to conversation-service and one to character-service for all
of them, then all marked done in one MongoDB write. A reply stays `followups_pending` until both calls
were answered, and the sweeper sends what is still pending again through the same batches; the keys
make a repeat count nothing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from app.core.runtime import FollowUp, Runtime
from app.models import Message
from chat_common.errors import AppError

logger = logging.getLogger(__name__)


def queue(rt: Runtime, reply: Message, parent: Message | None = None) -> None:
    """Tell the others of `reply` with the next batch (within FOLLOW_UP_BATCH_SECONDS). `parent`: the
    message the reply answers, when the caller has it. A reply not queued (the backlog is full) stays
    pending for the sweeper."""
    if not rt.followups.add(str(reply.id), (reply, parent)):
        logger.warning("follow-up backlog full: reply %s left to the sweeper", reply.id)


async def tell(rt: Runtime, replies: list[FollowUp]) -> bool:
    """Tell conversation- and character-service of these replies (at most FOLLOW_UP_BATCH_SIZE), one
    call each, at once; then mark them done in one write. False when either service could not be
    told (the replies stay pending: the sweeper retries them)."""
    if not replies:
        return True
    counted = await _counted(rt, replies)
    activity, counters = await asyncio.gather(
        _answered(rt.fleet.record_activities, _activity_items(counted), "activity"),
        _answered(rt.fleet.change_counters, _counter_changes(counted), "counters"),
    )
    if not (activity and counters):
        return False
    await rt.messages.followups_done([reply.id for reply, _ in counted if reply.id is not None])
    return True


async def _counted(rt: Runtime, replies: list[FollowUp]) -> list[tuple[Message, list[Message]]]:
    """Each reply with the messages its follow-ups tell of: the reply, and its parent when the parent
    is a user message stored with it (or, for a reply stored before that was recorded, any user
    message). Parents the callers did not have are read in one query."""
    wanted = [reply.parent_id for reply, parent in replies if _parent_to_read(reply, parent)]
    read = await rt.messages.by_ids([pid for pid in wanted if pid is not None]) if wanted else {}
    counted = []
    for reply, given in replies:
        parent = read.get(reply.parent_id or "") if _parent_to_read(reply, given) else given
        if reply.with_parent is False or parent is None or parent.role != "user":
            counted.append((reply, [reply]))
        else:
            counted.append((reply, [parent, reply]))
    return counted


def _parent_to_read(reply: Message, parent: Message | None) -> bool:
    return (
        reply.with_parent is not False
        and reply.parent_id is not None
        and (parent is None or str(parent.id) != reply.parent_id)
    )


def _activity_items(counted: list[tuple[Message, list[Message]]]) -> list[dict[str, Any]]:
    """One item per conversation: all its message ids, and the newest one's time."""
    items: dict[str, dict[str, Any]] = {}
    for _, messages in counted:
        for message in messages:
            item = items.setdefault(
                message.conversation_id,
                {"conversation_id": message.conversation_id, "message_ids": [], "at": message.created_at},
            )
            item["message_ids"].append(str(message.id))
            item["at"] = max(item["at"], message.created_at)
    return [{**item, "at": item["at"].isoformat()} for item in items.values()]


def _counter_changes(counted: list[tuple[Message, list[Message]]]) -> list[dict[str, Any]]:
    changes = []
    for reply, messages in counted:
        if reply.with_parent is None:  # stored before `with_parent`: each message counted by its own key
            changes += [
                {"character_id": m.character_id, "messages": 1, "idempotency_key": f"message:{m.id}"}
                for m in messages
            ]
        else:
            key = f"exchange:{reply.id}"
            changes.append(
                {"character_id": reply.character_id, "messages": len(messages), "idempotency_key": key}
            )
    return changes


async def _answered(
    call: Callable[[list[dict[str, Any]]], Awaitable[list[dict[str, Any]]]],
    items: list[dict[str, Any]],
    what: str,
) -> bool:
    """Send one batch: True once answered. Items the service refused for good (a deleted conversation or
    character, a key reused with other amounts) are logged: retrying cannot change them. So is a 4xx
    for the whole batch; only an outage (5xx, no answer) is retried."""
    try:
        answers = await call(items)
    except AppError as exc:
        if exc.status_code >= 500 or exc.status_code in (401, 403):  # an outage, or a token or scope
            # refused until configuration is fixed: retried, never dropped
            logger.warning("follow-ups (%s) not told yet (%s): %s", what, exc.code, exc.message)
            return False
        logger.error("follow-ups (%s) refused for good (%s): %s", what, exc.code, exc.message)
        return True
    for answer in answers:
        if answer.get("status") not in ("recorded", "applied", "repeated"):
            logger.info("follow-up (%s) refused for good: %s", what, answer)
    return True
