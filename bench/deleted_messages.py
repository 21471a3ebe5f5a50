"""How long conversation-service takes to take deleted messages out of a big conversation's count.

A conversation keeps the ids it counted and the ids deleted since (so that a late activity never counts
a deleted message again); every update of it costs more on nx-27017 as those lists grow. This times
the updates of `forget_messages` on a conversation already holding `--ids` counted ids, against the
embedded MongoDB-protocol server, through the service's own repository (no HTTP):

- all counted (one update, the usual delete of an exchange);
- a greeting (never counted) with 199 counted ids, and the same call again (a retry): one update
  planned from the ids the conversation holds;
- the per-id path, for comparison (what a call takes when other calls keep changing the ids).

    .aienv/bin/python bench/deleted_messages.py [--ids 15000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from bson import ObjectId
from pymongo import AsyncMongoClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "conversation-service"))

from app.repositories.conversations import ConversationRepository  # noqa: E402
from app.services.conversations import UNCOUNT_TRIES  # noqa: E402
from chat_common.embedded import distinct_free_ports, start_mongodb  # noqa: E402


async def timed(label: str, call: Awaitable[Any]) -> None:
    started = time.perf_counter()
    await call
    print(f"{label:<46} {(time.perf_counter() - started) * 1000:8.1f} ms")


async def run(held: int) -> None:
    with tempfile.TemporaryDirectory() as data:
        server = start_mongodb(Path(data), distinct_free_ports(1)[0])
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(server.url)
        try:
            repository = ConversationRepository(client["bench_deleted_messages"])
            ids = [str(ObjectId()) for _ in range(held)]
            conversation = {
                "user_id": "bench",
                "character_id": "bench",
                "message_count": held,
                "counted_message_ids": ids,
                "uncounted_message_ids": [],
            }
            oid = (await repository.collection.insert_one(conversation)).inserted_id
            print(f"a conversation holding {held} counted message ids")

            async def forget(message_ids: list[str]) -> None:
                """`forget_messages`'s updates (without its read of the conversation after)."""
                if await repository.uncount_all_at_once(oid, message_ids):
                    return
                for _ in range(UNCOUNT_TRIES):
                    if await repository.uncount_as_read(oid, message_ids) is not None:
                        return
                raise AssertionError("the planned update kept failing with nothing else running")

            await timed("200 counted ids (one update)", forget(ids[:200]))
            greeting_and_more = [str(ObjectId()), *ids[200:399]]
            await timed("a greeting and 199 counted (planned update)", forget(greeting_and_more))
            await timed("the same 200 again (a retry)", forget(greeting_and_more))
            per_id = time.perf_counter()
            for message_id in ids[400:600]:
                await repository.uncount_message(oid, message_id)
            took = (time.perf_counter() - per_id) * 1000
            print(f"{'200 counted ids, one by one (the fallback)':<46} {took:8.1f} ms")
            left = await repository.collection.find_one({"_id": oid}, {"message_count": 1})
            assert left is not None and left["message_count"] == held - 599, left
        finally:
            await client.close()
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ids", type=int, default=15_000, help="counted ids the conversation holds")
    asyncio.run(run(parser.parse_args().ids))


if __name__ == "__main__":
    main()
