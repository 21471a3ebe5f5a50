"""Found by an adversarial review: each test is one way a user could break the promise (a reply never
lost nor charged twice, a clear 4xx for bad input, never a 500)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from app.clients.fleet import Fleet as Fleet_
from app.config import Settings
from app.main import create_app
from chat_common.embedded import free_port, start_redis
from chat_common.testing import ServiceProcess, serve_app, serve_service
from chat_common.testing.fleet import FleetUser
from lmstudio_client.testing import StandinProcess
from tests.conftest import DATABASE, Fleet, make_settings
from tests.test_analytics import until
from tests.test_jobs import (  # noqa: F401  (killable_env: a fixture)
    SERVICE_DIR,
    _kill,
    iter_events,
    killable_env,
    read_events,
    wait_for_status,
    wait_until,
)


@pytest.fixture
async def messages(mongodb_url: str) -> AsyncIterator[AsyncCollection[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url)
    yield client[DATABASE]["messages"]
    await client.close()


async def test_a_plain_send_whose_conversation_is_purged_while_it_generates_is_404_not_500(
    client: httpx.AsyncClient,
    fleet: Fleet,
    alice: FleetUser,
    standin: StandinProcess,
    messages: AsyncCollection[dict[str, Any]],
) -> None:
    standin.configure(first_token_delay=3)
    conversation = fleet.conversation(alice)
    before = fleet.balance(alice)
    sending = asyncio.ensure_future(
        client.post(
            f"/api/v1/conversations/{conversation['id']}/messages",
            json={"content": "Tell me a long story", "max_tokens": 64},
            headers=alice.headers,
        )
    )

    async def generating() -> bool:
        found = await messages.find_one({"conversation_id": conversation["id"], "status": "generating"})
        return found is not None

    await until(generating)
    fleet.delete_conversation(alice, conversation["id"])
    response = await asyncio.wait_for(sending, 20)

    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "conversation_deleted"
    await until(lambda: _balance_is(fleet, alice, before))


async def _balance_is(fleet: Fleet, user: FleetUser, balance: int) -> bool:
    return fleet.balance(user) == balance


async def test_continuing_a_reply_whose_commit_is_still_pending_commits_it_first(
    client: httpx.AsyncClient,
    fleet: Fleet,
    alice: FleetUser,
    settings: Settings,
    messages: AsyncCollection[dict[str, Any]],
) -> None:
    conversation = fleet.conversation(alice)
    await client.get(f"/api/v1/conversations/{conversation['id']}/messages", headers=alice.headers)
    sent = await client.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"content": "Hello there", "max_tokens": 64},
        headers=alice.headers,
    )
    assert sent.status_code == 201, sent.text
    reply_id = sent.json()["reply"]["id"]
    # The reply's commit not acknowledged yet (user-service was away when it ended): a held
    # reservation, the reply's credits `commit_pending`.
    credits = Fleet_(settings)
    held = await credits.credits.reserve(
        user_id=alice.id, amount=5, idempotency_key=f"review:{reply_id}", reference="review", ttl_seconds=3600
    )
    await credits.aclose()
    await messages.update_one(
        {"_id": ObjectId(reply_id)},
        {
            "$set": {
                "generation.credits": "commit_pending",
                "generation.reservation_id": str(held.id),
                "generation.cost": 3,
            }
        },
    )

    continued = await client.post(
        f"/api/v1/messages/{reply_id}/continue", json={"max_tokens": 64}, headers=alice.headers
    )

    assert continued.status_code == 200, continued.text

    async def committed() -> bool:
        return fleet.reservation(str(held.id))["status"] == "committed"

    await until(committed, 5)
    assert fleet.reservation(str(held.id))["committed_amount"] == 3


async def test_a_reservation_whose_answer_was_lost_is_given_back(
    extra_app: Any, fleet: Fleet, alice: FleetUser, user_service: ServiceProcess
) -> None:
    base_url, _ = extra_app(downstream_timeout_seconds=1)
    conversation = fleet.conversation(alice)
    path = f"/api/v1/conversations/{conversation['id']}/messages"
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        warm = await http.post(path, json={"content": "Hello", "max_tokens": 64}, headers=alice.headers)
        assert warm.status_code == 201, warm.text
        before = fleet.balance(alice)
        # user-service takes the reserve but answers too late: message-service cannot know whether
        # the credits were held.
        user_service.process.send_signal(signal.SIGSTOP)
        try:
            response = await http.post(
                path, json={"content": "Again", "max_tokens": 64}, headers=alice.headers
            )
        finally:
            user_service.process.send_signal(signal.SIGCONT)

    assert response.status_code in (502, 503, 504), response.text
    assert response.json()["error"]["details"]["service"] == "user-service"
    await until(lambda: _balance_is(fleet, alice, before), 15)


async def _reply_with_a_pending_commit(
    client: httpx.AsyncClient,
    fleet: Fleet,
    user: FleetUser,
    settings: Settings,
    messages: AsyncCollection[dict[str, Any]],
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A conversation with one exchange whose reply's commit is not acknowledged yet (user-service was
    away when it ended): (conversation, the send's answer, the held reservation's id)."""
    conversation = fleet.conversation(user)
    sent = await client.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"content": "Hello there", "max_tokens": 64},
        headers=user.headers,
    )
    assert sent.status_code == 201, sent.text
    reply_id = sent.json()["reply"]["id"]
    credits = Fleet_(settings)
    held = await credits.credits.reserve(
        user_id=user.id, amount=5, idempotency_key=f"review:{reply_id}", reference="review", ttl_seconds=3600
    )
    await credits.aclose()
    await messages.update_one(
        {"_id": ObjectId(reply_id)},
        {
            "$set": {
                "generation.credits": "commit_pending",
                "generation.reservation_id": str(held.id),
                "generation.cost": 3,
            }
        },
    )
    return conversation, sent.json(), str(held.id)


async def test_deleting_a_reply_whose_commit_is_still_pending_commits_it_first(
    client: httpx.AsyncClient,
    fleet: Fleet,
    alice: FleetUser,
    settings: Settings,
    messages: AsyncCollection[dict[str, Any]],
) -> None:
    _, sent, held = await _reply_with_a_pending_commit(client, fleet, alice, settings, messages)

    deleted = await client.delete(f"/api/v1/messages/{sent['user_message']['id']}", headers=alice.headers)

    assert deleted.status_code == 204, deleted.text
    assert fleet.reservation(held)["status"] == "committed"
    assert fleet.reservation(held)["committed_amount"] == 3


async def test_a_deleted_conversation_is_purged_only_once_its_pending_commit_is_made(
    client: httpx.AsyncClient,
    fleet: Fleet,
    alice: FleetUser,
    settings: Settings,
    messages: AsyncCollection[dict[str, Any]],
    user_service: ServiceProcess,
) -> None:
    conversation, _, held = await _reply_with_a_pending_commit(client, fleet, alice, settings, messages)

    async def purged() -> bool:
        return await messages.count_documents({"conversation_id": conversation["id"]}) == 0

    user_service.process.send_signal(signal.SIGSTOP)  # user-service away: the commit cannot be made
    try:
        fleet.delete_conversation(alice, conversation["id"])
        # past a commit's timeout: the sweep gave up on it and went on to the purge
        await asyncio.sleep(settings.downstream_timeout_seconds + 3)
        kept = await messages.count_documents({"conversation_id": conversation["id"]})
    finally:
        user_service.process.send_signal(signal.SIGCONT)
    await until(purged, 30)

    assert kept > 0  # not purged while its reservation was still held
    assert fleet.reservation(held)["status"] == "committed"
    assert fleet.reservation(held)["committed_amount"] == 3


async def test_reading_or_regenerating_a_message_deleted_meanwhile_is_404_never_500(
    client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser
) -> None:
    conversation = fleet.conversation(alice)
    path = f"/api/v1/conversations/{conversation['id']}/messages"
    statuses: set[int] = set()
    for n in range(8):
        sent = await client.post(
            path, json={"content": f"Hello {n}", "max_tokens": 16}, headers=alice.headers
        )
        assert sent.status_code == 201, sent.text
        user_id, reply_id = sent.json()["user_message"]["id"], sent.json()["reply"]["id"]
        deleting = asyncio.ensure_future(client.delete(f"/api/v1/messages/{user_id}", headers=alice.headers))
        answers: list[httpx.Response] = []
        while True:  # reads during the delete, and one round after it
            deleted = deleting.done()
            answers += await asyncio.gather(
                *(
                    client.get(f"/api/v1/messages/{reply_id}/siblings", headers=alice.headers)
                    for _ in range(3)
                ),
                *(
                    client.post(f"/api/v1/messages/{reply_id}/select", headers=alice.headers)
                    for _ in range(3)
                ),
                client.post(
                    f"/api/v1/messages/{reply_id}/regenerate", json={"max_tokens": 16}, headers=alice.headers
                ),
            )
            if deleted:
                break
        answers.append(await deleting)
        statuses.update(a.status_code for a in answers)
        for answer in answers:
            assert answer.status_code < 500, answer.text
    assert 404 in statuses


async def test_redis_hung_mid_reply_the_reply_still_completes_stored_and_paid_once_not_a_500(
    mongodb_url: str,
    user_service: ServiceProcess,
    character_service: ServiceProcess,
    conversation_service: ServiceProcess,
    llm_service: ServiceProcess,
    fleet: Fleet,
    alice: FleetUser,
    standin: StandinProcess,
    tmp_path: Path,
) -> None:
    """Redis stops answering (SIGSTOP, past the client's socket timeout) while a reply generates: the
    stream carries the reply only to its readers, the job keeps the text, so the reply completes whole,
    is stored and paid once (it once failed with a 503 naming Redis, losing the reply)."""
    redis = start_redis(tmp_path / "redis", free_port(), persist=False)
    assert redis.process is not None
    settings = make_settings(
        mongodb_url, redis.url, user_service, character_service, conversation_service, llm_service
    )
    conversation = fleet.conversation(alice)
    path = f"/api/v1/conversations/{conversation['id']}/messages"
    before = fleet.balance(alice)
    try:
        with serve_app(create_app(settings)) as base_url:
            async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
                await http.get(path, headers=alice.headers)
                standin.configure(tokens_per_second=5)
                body = {"content": " ".join(["word"] * 12), "max_tokens": 64}
                sending = asyncio.ensure_future(http.post(path, json=body, headers=alice.headers))
                await asyncio.sleep(1.5)  # some pieces are out
                redis.process.send_signal(signal.SIGSTOP)
                try:
                    await asyncio.sleep(7)  # longer than the Redis client's socket timeout
                finally:
                    redis.process.send_signal(signal.SIGCONT)
                response = await asyncio.wait_for(sending, 30)
    finally:
        redis.stop()

    assert response.status_code == 201, response.text
    reply = response.json()["reply"]
    assert reply["status"] == "completed"
    assert reply["content"] == "You said: " + body["content"]
    await wait_until(lambda: fleet.balance(alice) == before - reply["generation"]["cost"])


async def test_an_impersonation_whose_reservation_answer_was_lost_gives_it_back(
    extra_app: Any, fleet: Fleet, alice: FleetUser, user_service: ServiceProcess
) -> None:
    base_url, _ = extra_app(downstream_timeout_seconds=1)
    conversation = fleet.conversation(alice)
    path = f"/api/v1/conversations/{conversation['id']}/impersonate"
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        warm = await http.post(path, json={"max_tokens": 64}, headers=alice.headers)
        assert warm.status_code == 200, warm.text
        before = fleet.balance(alice)
        user_service.process.send_signal(signal.SIGSTOP)
        try:
            response = await http.post(path, json={"max_tokens": 64}, headers=alice.headers)
        finally:
            user_service.process.send_signal(signal.SIGCONT)

    assert response.status_code in (502, 503, 504), response.text
    await until(lambda: _balance_is(fleet, alice, before), 15)


async def test_a_continuation_whose_process_is_killed_leaves_the_reply_as_it_was_not_failed(
    client: httpx.AsyncClient,
    fleet: Fleet,
    alice: FleetUser,
    standin: StandinProcess,
    killable_env: dict[str, str],  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    conversation = fleet.conversation(alice)
    sent = await client.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"content": "Hello there", "max_tokens": 64},
        headers=alice.headers,
    )
    assert sent.status_code == 201, sent.text
    reply = sent.json()["reply"]
    before = fleet.balance(alice)
    standin.configure(tokens_per_second=5)

    with serve_service(SERVICE_DIR, killable_env, log_path=tmp_path / "ms.log") as doomed:
        async with httpx.AsyncClient(base_url=doomed.url, timeout=30) as http:
            async with http.stream(
                "POST",
                f"/api/v1/messages/{reply['id']}/continue",
                json={"stream": True, "max_tokens": 64},
                headers=alice.headers,
            ) as response:
                assert response.status_code == 200
                await read_events(response, until=2)
            _kill(doomed)

    ended = await wait_for_status(client, alice, reply["id"], within=20)

    assert ended["status"] == "completed", ended
    assert ended["content"].startswith(reply["content"])
    assert ended["generation"]["error_code"] == "generation_lost"
    await wait_until(lambda: fleet.balance(alice) == before)  # the continuation's credits released


async def test_a_send_right_after_a_streamed_reply_completed_is_not_409(
    client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser
) -> None:
    conversation = fleet.conversation(alice)
    path = f"/api/v1/conversations/{conversation['id']}/messages"
    for n in range(5):
        async with client.stream(
            "POST",
            path,
            json={"content": f"Hello {n}", "stream": True, "max_tokens": 16},
            headers=alice.headers,
        ) as response:
            events = [event async for event in iter_events(response)]
        assert events[-1][1] == "message.completed", events[-1]
        # the client was told the reply is complete: the conversation is free for the next message
        nxt = await client.post(
            f"/api/v1/messages/{events[-1][2]['id']}/regenerate",
            json={"max_tokens": 16},
            headers=alice.headers,
        )
        assert nxt.status_code == 201, nxt.text


async def test_streaming_a_user_message_is_409_not_a_reply_not_a_replay_of_it_as_one(
    client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser
) -> None:
    conversation = fleet.conversation(alice)
    sent = await client.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"content": "Hello there", "max_tokens": 16},
        headers=alice.headers,
    )
    assert sent.status_code == 201, sent.text

    response = await client.get(
        f"/api/v1/messages/{sent.json()['user_message']['id']}/stream", headers=alice.headers
    )

    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "not_a_reply"


async def test_a_commit_user_service_refuses_for_good_is_recorded_not_retried_and_the_reply_stays_usable(
    client: httpx.AsyncClient,
    fleet: Fleet,
    alice: FleetUser,
    messages: AsyncCollection[dict[str, Any]],
) -> None:
    """A pending commit user-service answers with 409 `reservation_settled` (its reservation settled
    otherwise: expired while user-service was away past its TTL, say) is final: the reply's credits
    become `refused` (logged as an error), the sweeper stops retrying it, and the reply can be deleted
    (before, every delete or continue of it was a 503 naming user-service, for ever)."""
    conversation = fleet.conversation(alice)
    sent = await client.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"content": "Hello"},
        headers=alice.headers,
    )
    assert sent.status_code == 201, sent.text
    reply_id = sent.json()["reply"]["id"]

    async def credits() -> str:
        found = await messages.find_one({"_id": ObjectId(reply_id)})
        assert found is not None
        return str(found["generation"]["credits"])

    await until_credits(credits, "committed")
    # Its reservation is committed: a commit of another amount is refused as settled.
    stored = await messages.find_one({"_id": ObjectId(reply_id)})
    assert stored is not None
    await messages.update_one(
        {"_id": ObjectId(reply_id)},
        {
            "$set": {
                "generation.credits": "commit_pending",
                "generation.cost": stored["generation"]["cost"] + 1,
            }
        },
    )
    balance = fleet.balance(alice)
    await until_credits(credits, "refused")
    deleted = await client.delete(f"/api/v1/messages/{reply_id}", headers=alice.headers)
    assert deleted.status_code == 204, deleted.text
    assert fleet.balance(alice) == balance  # nothing charged or given back twice


async def until_credits(credits: Any, state: str, within: float = 15) -> None:
    deadline = time.monotonic() + within
    while (seen := await credits()) != state:
        assert time.monotonic() < deadline, f"credits {seen}, not {state}"
        await asyncio.sleep(0.2)
