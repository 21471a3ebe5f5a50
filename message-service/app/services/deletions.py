"""Deleted messages told to conversation-service, whose `message_count` counted them. A deletion is
recorded in MongoDB before its messages are deleted and removed once conversation-service acknowledged
it, so that neither a conversation-service away nor a process killed midway leaves the count high: the
sweeper tells what is left. Telling is idempotent there (each id taken out once, never counted again)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from pymongo.errors import PyMongoError

from app.core.runtime import Runtime, now
from app.models import Deletion, Message
from chat_common.errors import AppError

logger = logging.getLogger(__name__)


async def record(rt: Runtime, conversation: dict[str, Any], doomed: list[Message]) -> Deletion:
    """The deletion of `doomed`, durable before any of them is deleted."""
    return await rt.messages.record_deletion(
        Deletion(
            conversation_id=conversation["id"],
            user_id=conversation["user_id"],
            message_ids=[str(m.id) for m in doomed],
            created_at=now(),
        )
    )


async def tell(rt: Runtime, deletion: Deletion, *, deleted: bool = False) -> bool:
    """Tell conversation-service of the deletion's messages that are gone (`deleted`: the caller just
    deleted them all; otherwise a process killed before deleting them may have left them stored: those
    were not deleted and stay counted); forget the deletion once acknowledged. False when it could not
    be told (the sweeper retries)."""
    gone = deletion.message_ids
    if not deleted:
        stored = await rt.messages.stored_ids(gone)
        gone = [message_id for message_id in gone if message_id not in stored]
    try:
        if gone:
            await rt.fleet.forget_messages(deletion.conversation_id, gone)
    except AppError as exc:
        if exc.status_code != 404:  # an outage, or a refusal (a token, a scope) that configuration fixes
            log = logger.warning if exc.status_code >= 500 else logger.error
            log(
                "deletion in conversation %s not told yet (%s): %s",
                deletion.conversation_id,
                exc.code,
                exc.message,
            )
            return False
        logger.error(  # the conversation is unknown there: nothing left to lower
            "deletion in conversation %s refused for good (%s): %s",
            deletion.conversation_id,
            exc.code,
            exc.message,
        )
    assert deletion.id is not None
    await rt.messages.deletion_told(deletion.id)
    return True


async def tell_now(rt: Runtime, deletion: Deletion) -> None:
    """Tell of messages the caller just deleted, at once; whatever fails is left to the sweeper (the
    delete itself is done: the client is not told otherwise)."""
    try:
        await tell(rt, deletion, deleted=True)
    except PyMongoError as exc:
        logger.warning("deletion %s left to the sweeper: MongoDB is away (%s)", deletion.id, exc)


async def retry(rt: Runtime) -> None:
    """Deletions older than a sweep interval: each under its conversation's lock, so that none is read
    while its request is still deleting (a held lock: the next sweep)."""
    before = now() - timedelta(seconds=rt.settings.sweep_interval_seconds)
    for deletion in await rt.messages.deletions_before(before):
        lock = await rt.live.lock_conversation(deletion.conversation_id, rt.settings.job_lease_seconds)
        if lock is None:
            continue
        try:
            if not await tell(rt, deletion):
                return  # conversation-service is away: the next sweep tries again
        finally:
            await rt.live.unlock_conversation(deletion.conversation_id, lock)
