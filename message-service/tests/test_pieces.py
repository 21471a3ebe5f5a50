"""A reply's pieces on their way to its Redis stream (a real Redis): in order, merged while Redis is busy."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from app.repositories.live import Live
from app.services.pieces import PiecePublisher, merged


@pytest.fixture
async def live(redis_url: str) -> AsyncIterator[Live]:
    client = Redis.from_url(redis_url)
    try:
        yield Live(client, redis_url, f"test-{uuid.uuid4().hex[:8]}", messages_per_minute=10)
    finally:
        await client.aclose()


def test_consecutive_pieces_of_a_kind_are_joined_and_kinds_keep_their_order() -> None:
    pieces = [("reasoning", "a"), ("reasoning", "b"), ("delta", "c"), ("delta", "d"), ("reasoning", "e")]

    assert merged(pieces) == [
        ("reasoning", {"text": "ab"}),
        ("delta", {"text": "cd"}),
        ("reasoning", {"text": "e"}),
    ]


async def test_pieces_that_come_while_redis_is_busy_are_sent_as_fewer_events_with_the_same_text(
    live: Live,
) -> None:
    publisher = PiecePublisher(live, "reply-1")
    words = [f"word{n} " for n in range(50)]

    for word in words[:25]:
        publisher.add("delta", word)
    publisher.add("reasoning", "thinking")
    for word in words[25:]:
        publisher.add("delta", word)
    await publisher.flush()

    events = await live.read("reply-1", "0", 100)
    assert 1 < len(events) < 51
    assert "".join(data["text"] for _, name, data in events if name == "delta") == "".join(words)
    assert [name for _, name, _ in events] == ["delta", "reasoning", "delta"]


async def test_a_piece_alone_is_published_at_once(live: Live) -> None:
    publisher = PiecePublisher(live, "reply-2")

    publisher.add("delta", "Hello")
    await publisher.flush()
    publisher.add("delta", " there")
    await publisher.flush()

    events = await live.read("reply-2", "0", 100)
    assert [(name, data["text"]) for _, name, data in events] == [("delta", "Hello"), ("delta", " there")]
