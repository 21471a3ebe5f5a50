"""What a finished reply tells the other services: each message counted once, however it came."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient

from app.config import Settings
from app.main import create_app
from chat_common.embedded import free_port
from chat_common.testing import ServiceProcess, create_database, serve_app, serve_service
from chat_common.testing.fleet import REPO_ROOT, FleetUser, run_sync
from tests.conftest import DATABASE, Fleet, make_settings


def _character_messages(fleet: Fleet, owner: FleetUser, character_id: str) -> int:
    response = httpx.get(f"{fleet.characters}/api/v1/characters/{character_id}", headers=owner.headers)
    return int(response.json()["message_count"])


async def _until(condition: Any, seconds: float = 10) -> None:
    for _ in range(int(seconds * 10)):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"condition not met within {seconds:g} s")


async def _until_async(value: Callable[[], Awaitable[Any]], wanted: Any, seconds: float = 20) -> None:
    for _ in range(int(seconds * 10)):
        if (got := await value()) == wanted:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{got!r} is not {wanted!r} within {seconds:g} s")


async def _stored(mongodb_url: str, message_id: str, database: str = DATABASE) -> dict[str, Any]:
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url)
    try:
        stored = await mongo[database]["messages"].find_one({"_id": ObjectId(message_id)})
    finally:
        await mongo.close()
    assert stored is not None
    return stored


async def _pending(mongodb_url: str, reply_ids: list[str], database: str = DATABASE) -> int:
    """How many of these replies still have their follow-ups pending."""
    stored = [await _stored(mongodb_url, reply_id, database) for reply_id in reply_ids]
    return sum(bool(message["followups_pending"]) for message in stored)


async def _exchange(
    client: httpx.AsyncClient, owner: FleetUser, conversation_id: str, text: str
) -> dict[str, Any]:
    """A plain send; its answer (the user message and the reply)."""
    sent = await client.post(
        f"/api/v1/conversations/{conversation_id}/messages", json={"content": text}, headers=owner.headers
    )
    assert sent.status_code == 201, sent.text
    return dict(sent.json())


async def _send(client: httpx.AsyncClient, owner: FleetUser, conversation_id: str, text: str) -> str:
    """A plain send; the reply's id."""
    return str((await _exchange(client, owner, conversation_id, text))["reply"]["id"])


async def test_an_edit_without_a_reply_counts_its_new_message_once(
    client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser
) -> None:
    character = fleet.character(alice)
    conversation = fleet.conversation(alice, character["id"])
    sent = await client.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"content": "Hello, captain!"},
        headers=alice.headers,
    )
    assert sent.status_code == 201, sent.text

    edited = await client.patch(
        f"/api/v1/messages/{sent.json()['user_message']['id']}",
        json={"content": "Good evening, captain!"},
        headers=alice.headers,
    )
    assert edited.status_code == 201, edited.text

    # the user message, its reply and the edited branch: every stored message but the greeting
    await _until(lambda: fleet.read_conversation(alice, conversation["id"])["message_count"] == 3)
    await _until(lambda: _character_messages(fleet, alice, character["id"]) == 3)
    await asyncio.sleep(0.5)  # nothing more arrives later
    assert fleet.read_conversation(alice, conversation["id"])["message_count"] == 3


async def test_a_send_a_regenerate_and_a_continue_count_each_message_once(
    client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser
) -> None:
    character = fleet.character(alice)
    conversation = fleet.conversation(alice, character["id"])
    sent = await client.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"content": "Hello, captain!"},
        headers=alice.headers,
    )
    assert sent.status_code == 201, sent.text

    regenerated = await client.post(
        f"/api/v1/messages/{sent.json()['reply']['id']}/regenerate", json={}, headers=alice.headers
    )
    assert regenerated.status_code == 201, regenerated.text
    continued = await client.post(
        f"/api/v1/messages/{regenerated.json()['reply']['id']}/continue", json={}, headers=alice.headers
    )
    assert continued.status_code == 200, continued.text

    # the user message, its first reply and the regenerated one (continued, still one message)
    await _until(lambda: _character_messages(fleet, alice, character["id"]) == 3)
    await _until(lambda: fleet.read_conversation(alice, conversation["id"])["message_count"] == 3)
    await asyncio.sleep(0.5)  # nothing more arrives later
    assert _character_messages(fleet, alice, character["id"]) == 3
    assert fleet.read_conversation(alice, conversation["id"])["message_count"] == 3


async def test_a_finished_reply_is_left_with_its_credits_committed_and_its_follow_ups_done(
    client: httpx.AsyncClient, mongodb_url: str, fleet: Fleet, alice: FleetUser
) -> None:
    conversation = fleet.conversation(alice)

    sent = await client.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"content": "Hello, captain!"},
        headers=alice.headers,
    )

    assert sent.status_code == 201, sent.text
    reply_id = sent.json()["reply"]["id"]
    assert (await _stored(mongodb_url, reply_id))["generation"]["credits"] == "committed"
    await _until_async(lambda: _pending(mongodb_url, [reply_id]), 0)
    stored = await _stored(mongodb_url, reply_id)
    assert stored["generation"]["credits"] == "committed"
    assert not stored["followups_pending"]
    assert stored["with_parent"]


async def test_exchanges_in_several_conversations_at_once_count_exactly(
    client: httpx.AsyncClient, mongodb_url: str, fleet: Fleet, alice: FleetUser
) -> None:
    shared, other = fleet.character(alice), fleet.character(alice)
    conversations = [fleet.conversation(alice, c["id"]) for c in (shared, shared, shared, other)]

    async def talk(conversation: dict[str, Any]) -> list[str]:  # one send at a time per conversation
        return [await _send(client, alice, conversation["id"], f"Turn {turn}") for turn in range(4)]

    replies = [r for rs in await asyncio.gather(*(talk(c) for c in conversations)) for r in rs]

    await _until_async(lambda: _pending(mongodb_url, replies), 0)
    await asyncio.sleep(1.5)  # past a few sweeps: nothing more arrives later
    assert [fleet.read_conversation(alice, c["id"])["message_count"] for c in conversations] == [8] * 4
    assert _character_messages(fleet, alice, shared["id"]) == 24
    assert _character_messages(fleet, alice, other["id"]) == 8


@pytest.fixture
def make_settings_for(
    mongodb_url: str,
    redis_url: str,
    user_service: ServiceProcess,
    character_service: ServiceProcess,
    conversation_service: ServiceProcess,
    llm_service: ServiceProcess,
) -> Callable[..., Settings]:
    """`make_settings_for(**overrides)`: settings of another message-service on the session's fleet."""
    return functools.partial(
        make_settings,
        mongodb_url,
        redis_url,
        user_service,
        character_service,
        conversation_service,
        llm_service,
    )


async def test_follow_ups_still_waiting_are_told_when_the_process_shuts_down(
    mongodb_url: str, make_settings_for: Callable[..., Settings], fleet: Fleet, alice: FleetUser
) -> None:
    character = fleet.character(alice)
    conversation = fleet.conversation(alice, character["id"])
    # A batch that would wait a minute, and no sweeper before then (a database of its own, which the
    # session's message-service does not sweep): only the shutdown tells them.
    database = f"message_service_test_{uuid.uuid4().hex[:8]}"
    settings = make_settings_for(
        follow_up_batch_seconds=60, sweep_interval_seconds=60, mongodb_database=database
    )

    with serve_app(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            replies = [await _send(client, alice, conversation["id"], f"Turn {t}") for t in range(2)]
            await asyncio.sleep(0.5)
            waiting = await _pending(mongodb_url, replies, database)

    assert waiting == 2
    assert await _pending(mongodb_url, replies, database) == 0
    assert fleet.read_conversation(alice, conversation["id"])["message_count"] == 4
    assert _character_messages(fleet, alice, character["id"]) == 4


class Restartable:
    """A service process that a test stops and starts again on the same port and database."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name, self.env, self.log_dir = name, env, log_dir
        self.url = f"http://127.0.0.1:{free_port()}"
        self._running = contextlib.ExitStack()

    def start(self) -> None:
        port = int(self.url.rsplit(":", 1)[1])
        log = self.log_dir / f"{self.name}.log"
        self._running.enter_context(serve_service(REPO_ROOT / self.name, self.env, log_path=log, port=port))

    def stop(self) -> None:
        self._running.close()


@pytest.fixture
def own_services(
    postgres_url: str, mongodb_url: str, user_service: ServiceProcess, tmp_path: Path
) -> Iterator[tuple[Restartable, Restartable]]:
    """A character-service and a conversation-service of this test's own (it talks to its character-
    service), each on its own database, that the test may stop and start again."""
    characters = Restartable(
        "character-service",
        {
            "ENVIRONMENT": "test",
            "DATABASE_URL": run_sync(create_database(postgres_url, "characters")),
            "JWKS_URL": f"{user_service.url}/.well-known/jwks.json",
            "JSON_LOGS": "false",
        },
        tmp_path,
    )
    conversations = Restartable(
        "conversation-service",
        {
            "ENVIRONMENT": "test",
            "MONGODB_URL": mongodb_url,
            "MONGODB_DATABASE": f"conversations_{uuid.uuid4().hex[:8]}",
            "JWKS_URL": f"{user_service.url}/.well-known/jwks.json",
            "USER_SERVICE_URL": user_service.url,
            "CHARACTER_SERVICE_URL": characters.url,
            "JSON_LOGS": "false",
        },
        tmp_path,
    )
    characters.start()
    conversations.start()
    try:
        yield characters, conversations
    finally:
        conversations.stop()
        characters.stop()


def _own_message_service(
    extra_app: Any, services: tuple[Restartable, Restartable], user_service: ServiceProcess, **caches: float
) -> tuple[str, str, Fleet]:
    """A message-service on the test's own character- and conversation-service, with a database of its
    own (the session's message-service sweeps its own, and would tell its fleet): its URL, database
    and the fleet it talks to."""
    characters, conversations = services
    database = f"message_service_test_{uuid.uuid4().hex[:8]}"
    url, _ = extra_app(
        character_service_url=characters.url,
        conversation_service_url=conversations.url,
        mongodb_database=database,
        **caches,
    )
    return url, database, Fleet(user_service, characters, conversations)  # type: ignore[arg-type]


@pytest.mark.parametrize("away", ["character-service", "conversation-service"])
async def test_counts_become_exact_once_a_service_that_was_away_is_back(
    away: str,
    own_services: tuple[Restartable, Restartable],
    extra_app: Any,
    mongodb_url: str,
    user_service: ServiceProcess,
    alice: FleetUser,
) -> None:
    characters, conversations = own_services
    # Long caches: the sends read the conversation and the character before the outage only.
    url, database, scene = _own_message_service(
        extra_app, own_services, user_service, conversation_cache_seconds=300, character_cache_seconds=300
    )
    character = scene.character(alice)
    chats = [scene.conversation(alice, character["id"]) for _ in range(2)]
    service = characters if away == "character-service" else conversations

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        first = [await _send(client, alice, chat["id"], "Hello") for chat in chats]  # caches warmed
        await _until_async(lambda: _pending(mongodb_url, first, database), 0)
        service.stop()
        during = [await _send(client, alice, chat["id"], f"Turn {t}") for t in range(3) for chat in chats]
        await asyncio.sleep(1.5)  # a few sweeps fail meanwhile
        pending_while_away = await _pending(mongodb_url, during, database)
        service.start()
        await _until_async(lambda: _pending(mongodb_url, during, database), 0, seconds=30)

    await asyncio.sleep(1.5)  # past a few sweeps: nothing is counted twice
    assert pending_while_away == len(during)
    assert [scene.read_conversation(alice, chat["id"])["message_count"] for chat in chats] == [8, 8]
    assert _character_messages(scene, alice, character["id"]) == 16


async def _deletions(mongodb_url: str, conversation_id: str, database: str = DATABASE) -> int:
    """The conversation's deletions conversation-service has not acknowledged yet."""
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url)
    try:
        return len(await mongo[database]["deletions"].find({"conversation_id": conversation_id}).to_list())
    finally:
        await mongo.close()


async def _delete(client: httpx.AsyncClient, owner: FleetUser, message_id: str) -> None:
    deleted = await client.delete(f"/api/v1/messages/{message_id}", headers=owner.headers)
    assert deleted.status_code == 204, deleted.text


async def test_deleted_messages_leave_the_conversation_count_when_the_delete_returns(
    client: httpx.AsyncClient, mongodb_url: str, fleet: Fleet, alice: FleetUser
) -> None:
    conversation = fleet.conversation(alice)
    sent = [
        await _exchange(client, alice, conversation["id"], text) for text in ("Hello, captain!", "Where to?")
    ]
    await _until(lambda: fleet.read_conversation(alice, conversation["id"])["message_count"] == 4)

    await _delete(client, alice, sent[1]["user_message"]["id"])  # the user message and its reply
    after_branch = fleet.read_conversation(alice, conversation["id"])["message_count"]
    await _delete(client, alice, sent[0]["reply"]["id"])
    after_reply = fleet.read_conversation(alice, conversation["id"])["message_count"]

    assert (after_branch, after_reply) == (2, 1)
    await asyncio.sleep(1.2)  # past two sweeps: nothing is taken out twice, nothing counted again
    assert fleet.read_conversation(alice, conversation["id"])["message_count"] == 1
    assert await _deletions(mongodb_url, conversation["id"]) == 0


async def test_a_reply_deleted_before_its_follow_ups_went_out_is_never_counted(
    mongodb_url: str, make_settings_for: Callable[..., Settings], fleet: Fleet, alice: FleetUser
) -> None:
    conversation = fleet.conversation(alice)
    # The follow-ups wait a minute: only the shutdown tells them, after the delete.
    database = f"message_service_test_{uuid.uuid4().hex[:8]}"
    settings = make_settings_for(
        follow_up_batch_seconds=60, sweep_interval_seconds=60, mongodb_database=database
    )

    with serve_app(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            reply = await _send(client, alice, conversation["id"], "Hello, captain!")
            await _delete(client, alice, reply)

    await asyncio.sleep(0.3)
    assert fleet.read_conversation(alice, conversation["id"])["message_count"] == 1  # the user message


async def test_a_deletion_conversation_service_missed_is_told_once_it_is_back(
    own_services: tuple[Restartable, Restartable],
    extra_app: Any,
    mongodb_url: str,
    user_service: ServiceProcess,
    alice: FleetUser,
) -> None:
    conversations = own_services[1]
    url, database, scene = _own_message_service(
        extra_app, own_services, user_service, conversation_cache_seconds=300
    )
    chat = scene.conversation(alice, scene.character(alice)["id"])

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        replies = [await _send(client, alice, chat["id"], f"Turn {t}") for t in range(2)]
        await _until_async(lambda: _pending(mongodb_url, replies, database), 0)
        conversations.stop()
        deleted = await client.delete(f"/api/v1/messages/{replies[1]}", headers=alice.headers)
        await asyncio.sleep(1.5)  # a few sweeps fail meanwhile
        waiting = await _deletions(mongodb_url, chat["id"], database)
        conversations.start()
        await _until_async(lambda: _deletions(mongodb_url, chat["id"], database), 0, seconds=30)

    await asyncio.sleep(1.5)  # past a few sweeps: taken out once
    assert deleted.status_code == 204  # the delete does not wait for conversation-service
    assert waiting == 1
    assert scene.read_conversation(alice, chat["id"])["message_count"] == 3


async def test_a_deletion_whose_process_died_before_deleting_takes_out_only_what_is_gone(
    client: httpx.AsyncClient, mongodb_url: str, fleet: Fleet, alice: FleetUser
) -> None:
    """A deletion recorded, then the process killed before its messages were deleted: those are still
    stored and stay counted; only a message that is gone leaves the count."""
    conversation = fleet.conversation(alice)
    replies = [await _send(client, alice, conversation["id"], f"Turn {t}") for t in range(2)]
    await _until(lambda: fleet.read_conversation(alice, conversation["id"])["message_count"] == 4)
    await _delete(client, alice, replies[1])  # gone, and already taken out: 3
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url)
    try:
        await mongo[DATABASE]["deletions"].insert_one(
            {
                "conversation_id": conversation["id"],
                "user_id": alice.id,
                "message_ids": [replies[0], replies[1]],
                "created_at": 0,
            }
        )
    finally:
        await mongo.close()

    await _until_async(lambda: _deletions(mongodb_url, conversation["id"]), 0)
    assert fleet.read_conversation(alice, conversation["id"])["message_count"] == 3
    assert (await _stored(mongodb_url, replies[0]))["content"]


async def test_a_reply_deleted_while_conversation_service_is_away_leaves_its_user_message_counted(
    own_services: tuple[Restartable, Restartable],
    extra_app: Any,
    mongodb_url: str,
    user_service: ServiceProcess,
    alice: FleetUser,
) -> None:
    """The reply's follow-ups (which count the user message it answers) could not be told before the
    reply was deleted: the user message, which stays, is counted on its own once the service is back."""
    conversations = own_services[1]
    url, database, scene = _own_message_service(
        extra_app, own_services, user_service, conversation_cache_seconds=300
    )
    chat = scene.conversation(alice, scene.character(alice)["id"])

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        first = await _send(client, alice, chat["id"], "Hello")  # the conversation cached
        await _until_async(lambda: _pending(mongodb_url, [first], database), 0)
        conversations.stop()
        unanswered = await _send(client, alice, chat["id"], "Anyone there?")
        await _delete(client, alice, unanswered)
        conversations.start()
        await _until_async(lambda: _deletions(mongodb_url, chat["id"], database), 0, seconds=30)
        await _until(lambda: scene.read_conversation(alice, chat["id"])["message_count"] == 3, 30)

    await asyncio.sleep(1.5)  # past a few sweeps: nothing more is counted
    assert scene.read_conversation(alice, chat["id"])["message_count"] == 3  # Hello, its reply, Anyone


async def test_a_deletion_refused_for_a_token_is_kept_and_retried_not_dropped(
    extra_app: Any, mongodb_url: str, fleet: Fleet, alice: FleetUser
) -> None:
    """A refusal that configuration fixes (here user-service refusing message-service's secret, as in a
    secret rotated in the wrong order) is not "unknown conversation": the deletion stays to be told."""
    database = f"message_service_test_{uuid.uuid4().hex[:8]}"
    extra_app(message_service_client_secret="not-the-secret", mongodb_database=database)
    conversation = fleet.conversation(alice)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url)
    try:
        await mongo[database]["deletions"].insert_one(
            {
                "conversation_id": conversation["id"],
                "user_id": alice.id,
                "message_ids": [str(ObjectId())],
                "created_at": 0,
            }
        )
        await asyncio.sleep(2)  # a few sweeps, each refused
    finally:
        await mongo.close()

    assert await _deletions(mongodb_url, conversation["id"], database) == 1
