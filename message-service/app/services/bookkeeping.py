"""What a finished reply still owes the fleet: its credits settled at user-service, and the
conversation's activity and the character's message counter told (in batches: services.followups).
Each step is recorded on the stored reply and retried by the sweeper until acknowledged, so a restart
of any process resumes it; user-service's commit/release and the other services' counters are
idempotent, so a retry never counts twice."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta

from app.core.runtime import Runtime, now
from app.models import Generation, Message
from app.models.message import CreditsState
from app.repositories.messages import PENDING_CREDITS
from app.services import deletions, followups
from chat_common.errors import AppError, ServiceUnavailableError
from chat_common.redis import UNAVAILABLE as REDIS_UNAVAILABLE

logger = logging.getLogger(__name__)

# A reply whose process went away while generating it: failed, its reservation released.
LOST = "generation_lost"
LOST_MESSAGE = "The generation stopped: the process running it went away"


async def settle(rt: Runtime, reply: Message) -> bool:
    """Commit (completed or stopped) or release (failed) the reply's reservation; False when
    user-service could not be told (the sweeper retries)."""
    told = await _tell_credits(rt, reply)
    if isinstance(told, tuple):
        assert reply.id is not None and reply.generation is not None
        return await rt.messages.set_credits(reply.id, *told, reply.generation.reservation_id)
    return told


async def _tell_credits(rt: Runtime, reply: Message) -> tuple[CreditsState, CreditsState] | bool:
    """Commit or release the reservation at user-service: the change of the reply's credits state to
    record, True when there is nothing to tell, False when user-service could not be told."""
    generation = reply.generation
    if generation is None or generation.reservation_id is None or reply.id is None:
        return True
    reservation = uuid.UUID(generation.reservation_id)
    try:
        if generation.credits == "commit_pending":
            await rt.fleet.credits.commit(reservation, generation.cost)
            return "commit_pending", "committed"
        if generation.credits == "release_pending":
            await rt.fleet.credits.release(reservation)
            return "release_pending", "released"
    except AppError as exc:
        if _refused(exc):
            logger.error(
                "credits of reply %s refused by user-service (%s): %s; %s is not retried",
                reply.id,
                exc.code,
                exc.message,
                generation.credits,
            )
            return generation.credits, "refused"
        logger.warning("credits of reply %s not settled yet (%s): %s", reply.id, exc.code, exc.message)
        return False
    return True


def _refused(exc: AppError) -> bool:
    """user-service's final no to a commit or release: the reservation is unknown, or settled otherwise
    (expired while user-service was away past its TTL, say). Retrying cannot change it."""
    return exc.status_code == 404 or (exc.status_code == 409 and exc.code == "reservation_settled")


async def settle_now(rt: Runtime, reply: Message) -> None:
    """Settle the reply's pending commit or release before the reply is continued or deleted (either
    would lose its reservation, left held and never charged); 503 naming user-service when it cannot."""
    if reply.generation is None or reply.generation.credits not in PENDING_CREDITS or reply.id is None:
        return
    if await settle(rt, reply):
        return
    stored = await rt.messages.get(reply.id)  # the sweeper may have settled it meanwhile
    if stored is not None and stored.generation is not None and stored.generation.credits in PENDING_CREDITS:
        raise ServiceUnavailableError(
            "user-service could not settle this reply's credits yet: try again shortly",
            code="dependency_unavailable",
            details={"service": "user-service"},
        )


async def release_purged(rt: Runtime, reply: Message) -> None:
    """Release the reservation of a reply that was purged with its deleted conversation while it was
    generating: nothing of it is stored, so nothing is charged. There is no stored reply to retry
    from: when user-service cannot be told now, the reservation expires there (its TTL)."""
    generation = reply.generation
    if generation is None or generation.reservation_id is None:
        return
    try:
        await rt.fleet.credits.release(uuid.UUID(generation.reservation_id))
    except AppError as exc:
        logger.warning(
            "reservation of purged reply %s not released (%s): %s", reply.id, exc.code, exc.message
        )


async def fail_expired(rt: Runtime) -> int:
    """Replies whose job stopped renewing its lease (its replica died): failed, reservation released."""
    failed = 0
    for reply in await rt.messages.expired_leases(now()):
        assert reply.id is not None
        generation = (reply.generation or Generation()).model_copy(
            update={
                "error_code": LOST,
                "error_message": LOST_MESSAGE,
                "credits": "release_pending"
                if reply.generation and reply.generation.reservation_id
                else "none",
                "cost": 0,
            }
        )
        # A lost continuation leaves the reply as it was (its text before it, its status).
        resumed = reply.generation.resumed_from if reply.generation else None
        stored = await rt.messages.finish(
            reply.id,
            status=resumed or "failed",
            content=reply.content,
            reasoning=reply.reasoning,
            generation=generation,
            at=now(),
        )
        if stored is not None:
            failed += 1
            await settle(rt, stored)
            followups.queue(rt, stored)
            try:
                await rt.live.publish_end(
                    str(reply.id),
                    "error",
                    {"code": LOST, "message": LOST_MESSAGE},
                    rt.settings.stream_retention_seconds,
                )
            except REDIS_UNAVAILABLE:  # its readers tell its end from MongoDB
                logger.warning("end of lost reply %s not streamed: Redis is away", reply.id)
    return failed


async def retry_pending(rt: Runtime) -> None:
    for state in ("commit_pending", "release_pending"):
        for reply in await rt.messages.with_credits(state):  # type: ignore[arg-type]
            await settle(rt, reply)
    # Older than a sweep interval: the batches of this process had their chance at them by then.
    pending = await rt.messages.with_followups_pending(
        now() - timedelta(seconds=rt.settings.sweep_interval_seconds)
    )
    size = rt.settings.follow_up_batch_size
    for start in range(0, len(pending), size):
        if not await followups.tell(rt, [(reply, None) for reply in pending[start : start + size]]):
            return  # a service is away: the next sweep tries again


async def purge_deleted(rt: Runtime) -> int:
    """Messages of conversations conversation-service reports deleted, from where the last sweep
    stopped (the cursor is kept in Redis). A conversation whose replies' credits cannot be settled yet
    (user-service away) is kept, and the sweep stops there: its page is read again next round."""
    purged = 0
    cursor = await rt.live.get_json("sweep", "deleted-cursor") or ""
    while True:
        feed = await rt.fleet.deleted_conversations(cursor)
        for item in feed["items"]:
            if not await _settled_in(rt, item["id"]):
                logger.warning("conversation %s not purged yet: its credits are not settled", item["id"])
                return purged
            purged += await rt.messages.delete_conversation(item["id"])
            await rt.live.forget("conversation", item["id"])
        if not feed["items"]:
            return purged
        cursor = feed["next_cursor"]
        await rt.live.set_json(cursor, "sweep", "deleted-cursor")


async def _settled_in(rt: Runtime, conversation_id: str) -> bool:
    """Whether every reply of the conversation has its commit or release acknowledged (settled now
    when pending): purged unsettled, a reservation would be left to expire, never charged."""
    for reply in await rt.messages.unsettled(conversation_id):
        if not await settle(rt, reply):
            return False
    return True


ORPHANS_PAGE = 100


async def release_orphans(rt: Runtime) -> int:
    """Release the reservations this service made for a reply (or a continuation) that it never stored
    with them: its process was killed between reserving and storing. user-service lists what is still
    held past the grace; a reservation that the reply of its key records is the reply's own (settled
    by its credits state), any other key (an impersonation's) is left to its TTL. A send stores its
    reply within half the grace or gives up (services.sending), so a slow one is never taken for lost;
    a release is idempotent, so replicas sweeping together release each orphan once."""
    released, offset = 0, 0
    while True:
        held = await rt.fleet.credits.held(
            older_than_seconds=rt.settings.orphaned_reservation_grace_seconds,
            limit=ORPHANS_PAGE,
            offset=offset,
        )
        replies = {r.id: _reply_of(r.idempotency_key or "") for r in held}
        stored = await rt.messages.by_ids([reply_id for reply_id in replies.values() if reply_id])
        for reservation in held:
            reply_id = replies[reservation.id]
            if reply_id is None or _recorded(stored.get(reply_id)) == str(reservation.id):
                offset += 1  # still listed on the next page: stepped over
            elif await _release_orphan(rt, reservation.id):
                released += 1
            else:
                offset += 1  # refused: whatever it is now, never asked again this round
        if len(held) < ORPHANS_PAGE:
            return released


def _recorded(reply: Message | None) -> str | None:
    """The reservation the stored reply holds (its last generation's)."""
    return reply.generation.reservation_id if reply is not None and reply.generation is not None else None


def _reply_of(key: str) -> str | None:
    """The reply a reservation's idempotency key was made for (`reply:<id>`, `continue:<id>:<attempt>`:
    services.sending), None for another key."""
    kind, _, rest = key.partition(":")
    return rest.partition(":")[0] if kind in ("reply", "continue") else None


async def _release_orphan(rt: Runtime, reservation_id: uuid.UUID) -> bool:
    try:
        await rt.fleet.credits.release(reservation_id)
    except AppError as exc:
        if not _refused(exc):
            raise  # user-service away: the next sweep tries again
        return False  # settled meanwhile (expired, say): nothing held any more
    logger.warning("reservation %s of a reply never stored released", reservation_id)
    return True


async def sweep_forever(rt: Runtime) -> None:
    while True:
        await asyncio.sleep(rt.settings.sweep_interval_seconds)
        for step in (fail_expired, retry_pending, deletions.retry, purge_deleted, release_orphans):
            try:
                await step(rt)
            except Exception as exc:  # a backend away: the next round tries again
                logger.warning("sweep step %s failed: %s", step.__name__, exc)
