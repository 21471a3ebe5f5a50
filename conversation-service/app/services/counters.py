"""The character's conversation counter: told in the background, retried until character-service
acknowledges, never failing the user's request and never forgotten silently (logged and counted).

The pending state lives on the conversation (`character_counted`), so a restart resumes it; the
idempotency key (`conversation:<id>`) makes a retry of an acknowledged change count once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from bson import ObjectId
from prometheus_client import CollectorRegistry, Counter

from app.clients.directories import CharacterDirectory, CharacterGoneError
from app.core.clock import Clock
from app.repositories.conversations import ConversationRepository

logger = logging.getLogger(__name__)

RETRY_BATCH = 100


class CharacterCounter:
    def __init__(
        self,
        characters: CharacterDirectory,
        conversations: ConversationRepository,
        clock: Clock,
        registry: CollectorRegistry,
        *,
        retry_interval: float,
    ) -> None:
        self.characters = characters
        self.conversations = conversations
        self.clock = clock
        self.retry_interval = retry_interval
        self._tasks: set[asyncio.Task[bool]] = set()
        self._loop: asyncio.Task[None] | None = None
        self.failures = Counter(
            "character_counter_failures",
            "Conversation-counter updates character-service did not acknowledge (each is retried)",
            registry=registry,
        )
        self.given_up = Counter(
            "character_counter_given_up",
            "Conversation-counter updates dropped because the character was deleted (never retried)",
            registry=registry,
        )
        self.acknowledged = Counter(
            "character_counter_updates",
            "Conversation-counter updates character-service acknowledged",
            registry=registry,
        )

    def count_soon(self, conversation_id: ObjectId, character_id: str) -> None:
        """Tell character-service now, in the background; a failure is left for the retry loop."""
        task = asyncio.create_task(self._count(conversation_id, character_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _count(self, conversation_id: ObjectId, character_id: str) -> bool:
        try:
            await self.characters.count_conversation(character_id, key=f"conversation:{conversation_id}")
            await self.conversations.mark_counted(conversation_id)
        except CharacterGoneError:
            # Retrying could never succeed, and a pending conversation that always fails would hold a
            # place in every retry batch for good: settle it.
            return await self._give_up(conversation_id, character_id)
        except Exception as exc:  # any failure: the conversation stays pending and is retried
            self.failures.inc()
            logger.warning(
                "conversation counter of character %s not updated for conversation %s (will retry): %s",
                character_id,
                conversation_id,
                exc,
            )
            return False
        self.acknowledged.inc()
        return True

    async def _give_up(self, conversation_id: ObjectId, character_id: str) -> bool:
        try:
            await self.conversations.mark_counted(conversation_id)
        except Exception as exc:  # MongoDB away: the next pass meets the 404 again
            logger.warning("could not settle the counter of conversation %s: %s", conversation_id, exc)
            return False
        self.given_up.inc()
        logger.warning(
            "character %s is gone: conversation %s is not counted (given up)", character_id, conversation_id
        )
        return False

    async def retry_pending(self) -> int:
        """One pass over conversations still pending (older than the retry interval, so that the
        first attempt has had its chance); how many were acknowledged."""
        before = self.clock.now() - timedelta(seconds=self.retry_interval)
        done = 0
        for conversation_id, character_id in await self.conversations.uncounted(before, RETRY_BATCH):
            done += await self._count(conversation_id, character_id)
        return done

    async def _retry_forever(self) -> None:
        while True:
            await asyncio.sleep(self.retry_interval)
            try:
                await self.retry_pending()
            except Exception as exc:  # MongoDB away: try again next round
                logger.warning("counter retry pass failed: %s", exc)

    def start(self) -> None:
        self._loop = asyncio.create_task(self._retry_forever())

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._loop] if self._loop else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
