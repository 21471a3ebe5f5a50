"""Token estimates and their per-model calibration in a real Redis."""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from app.services.tokens import (
    DEFAULT_CHARS_PER_TOKEN,
    MAX_CHARS_PER_TOKEN,
    MIN_CHARS_PER_TOKEN,
    CalibrationStore,
    TokenEstimator,
)


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[CalibrationStore]:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        yield CalibrationStore(client, prefix=f"test:{uuid.uuid4().hex}:")
    finally:
        await client.aclose()


def test_empty_text_is_zero_tokens_and_any_text_is_at_least_one() -> None:
    estimator = TokenEstimator()

    assert estimator.estimate("") == 0
    assert estimator.estimate("a") == 1
    assert estimator.estimate(" ") == 1


def test_latin_text_is_estimated_by_the_characters_per_token_ratio() -> None:
    assert TokenEstimator(chars_per_token=4.0).estimate("x" * 400) == 100
    assert TokenEstimator(chars_per_token=2.0).estimate("x" * 400) == 200


def test_cyrillic_text_is_estimated_by_its_length() -> None:
    text = "Привет, как дела? Сегодня хорошая погода."

    assert TokenEstimator(chars_per_token=3.5).estimate(text) == math.ceil(len(text) / 3.5)


def test_cjk_characters_count_about_one_token_each() -> None:
    estimator = TokenEstimator(chars_per_token=3.5)
    chinese = "今天天气很好我们去公园散步吧"
    japanese = "こんにちは世界"
    korean = "안녕하세요"

    assert estimator.estimate(chinese) == len(chinese)
    assert estimator.estimate(japanese) == len(japanese)
    assert estimator.estimate(korean) == len(korean)
    assert estimator.estimate(chinese) > estimator.estimate("x" * len(chinese))


def test_emoji_count_about_one_token_each() -> None:
    assert TokenEstimator().estimate("😀🎉🐱") == 3


def test_mixed_text_adds_dense_characters_and_the_rest() -> None:
    assert TokenEstimator(chars_per_token=4.0).estimate("abcd漢字") == 1 + 2


def test_messages_carry_a_per_message_overhead_and_the_reply_priming() -> None:
    estimator = TokenEstimator(chars_per_token=4.0, message_overhead=4, reply_priming=3)
    messages = [{"role": "system", "content": "x" * 40}, {"role": "user", "content": "y" * 8}]

    assert estimator.estimate_messages(messages) == 3 + (10 + 4) + (2 + 4)
    assert estimator.estimate_messages([]) == 3


def test_a_cautious_estimator_counts_more_tokens_for_the_same_text() -> None:
    estimator = TokenEstimator(chars_per_token=3.5)

    assert estimator.cautious().estimate("x" * 350) > estimator.estimate("x" * 350)
    densest = TokenEstimator(chars_per_token=MIN_CHARS_PER_TOKEN)
    assert densest.cautious().chars_per_token == MIN_CHARS_PER_TOKEN


async def test_a_model_never_seen_gets_the_default_ratio(store: CalibrationStore) -> None:
    estimator = await store.get("unknown-model")

    assert estimator.chars_per_token == DEFAULT_CHARS_PER_TOKEN


async def test_an_overestimate_raises_the_models_ratio_and_only_that_models(store: CalibrationStore) -> None:
    await store.record("model-a", estimated_tokens=1200, reported_prompt_tokens=1000)

    assert (await store.get("model-a")).chars_per_token > DEFAULT_CHARS_PER_TOKEN
    assert (await store.get("model-b")).chars_per_token == DEFAULT_CHARS_PER_TOKEN


async def test_an_underestimate_lowers_the_ratio(store: CalibrationStore) -> None:
    await store.record("model-a", estimated_tokens=800, reported_prompt_tokens=1000)

    assert (await store.get("model-a")).chars_per_token < DEFAULT_CHARS_PER_TOKEN


async def test_repeated_samples_converge_to_the_reported_ratio(store: CalibrationStore) -> None:
    text = "x" * 3000  # the model really takes 3000 / 2.5 = 1200 tokens
    for _ in range(30):
        estimator = await store.get("model-a")
        await store.record("model-a", estimator.estimate(text), reported_prompt_tokens=1200)

    assert (await store.get("model-a")).chars_per_token == pytest.approx(2.5, rel=0.02)


async def test_the_ratio_stays_within_sane_bounds(store: CalibrationStore) -> None:
    for _ in range(50):
        await store.record("tiny", estimated_tokens=1, reported_prompt_tokens=10_000)
        await store.record("huge", estimated_tokens=10_000, reported_prompt_tokens=1)

    assert (await store.get("tiny")).chars_per_token == MIN_CHARS_PER_TOKEN
    assert (await store.get("huge")).chars_per_token == MAX_CHARS_PER_TOKEN


async def test_impossible_samples_are_ignored(store: CalibrationStore) -> None:
    await store.record("model-a", estimated_tokens=0, reported_prompt_tokens=100)
    await store.record("model-a", estimated_tokens=100, reported_prompt_tokens=0)

    assert (await store.get("model-a")).chars_per_token == DEFAULT_CHARS_PER_TOKEN


async def test_a_garbled_stored_ratio_falls_back_to_the_default(redis_url: str) -> None:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        store = CalibrationStore(client, prefix="garbled:")
        await client.set("garbled:model-a", "not a number")

        assert (await store.get("model-a")).chars_per_token == DEFAULT_CHARS_PER_TOKEN
    finally:
        await client.aclose()


async def test_the_calibration_expires_when_unused(store: CalibrationStore, redis_url: str) -> None:
    await store.record("model-a", estimated_tokens=1100, reported_prompt_tokens=1000)
    client = Redis.from_url(redis_url)
    try:
        ttl = await client.ttl(store._key("model-a"))
    finally:
        await client.aclose()

    assert ttl > 0
