"""The message tree through the API: regenerate, continue, select, edit as a branch, delete, the
active path's pages, the prompt and impersonation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from beanie import PydanticObjectId
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app
from app.models import Message
from app.services.tree import Tree
from chat_common.testing import ServiceProcess, serve_app
from chat_common.testing.fleet import FleetUser
from lmstudio_client.testing import StandinProcess
from tests.conftest import Fleet, make_settings
from tests.test_chat import _settled, sse_events

FAST = {"max_tokens": 8}


class Chat:
    """One user's calls to message-service, as the tests make them."""

    def __init__(self, client: httpx.AsyncClient, user: FleetUser) -> None:
        self.client = client
        self.user = user

    async def send(self, conversation_id: str, content: str, **options: Any) -> dict[str, Any]:
        response = await self.client.post(
            f"/api/v1/conversations/{conversation_id}/messages",
            json={"content": content, **FAST, **options},
            headers=self.user.headers,
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def path(self, conversation_id: str, **params: Any) -> dict[str, Any]:
        response = await self.client.get(
            f"/api/v1/conversations/{conversation_id}/messages", params=params, headers=self.user.headers
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def path_ids(self, conversation_id: str) -> list[str]:
        return [m["id"] for m in (await self.path(conversation_id, limit=200))["items"]]

    async def siblings(self, message_id: str) -> list[dict[str, Any]]:
        response = await self.client.get(f"/api/v1/messages/{message_id}/siblings", headers=self.user.headers)
        assert response.status_code == 200, response.text
        return list(response.json())

    async def post(self, message_id: str, action: str, **body: Any) -> httpx.Response:
        return await self.client.post(
            f"/api/v1/messages/{message_id}/{action}", json={**FAST, **body}, headers=self.user.headers
        )

    async def edit(self, message_id: str, content: str, **body: Any) -> httpx.Response:
        return await self.client.patch(
            f"/api/v1/messages/{message_id}",
            json={"content": content, **FAST, **body},
            headers=self.user.headers,
        )

    async def delete(self, message_id: str) -> httpx.Response:
        return await self.client.delete(f"/api/v1/messages/{message_id}", headers=self.user.headers)


@pytest.fixture
def chat(client: httpx.AsyncClient, alice: FleetUser) -> Chat:
    return Chat(client, alice)


def _cost(settings: Settings, completion_tokens: int) -> int:
    return settings.cost_per_message + -(-completion_tokens * settings.cost_per_1k_tokens // 1000)


# The greetings.


def test_greetings_keep_the_card_order_whichever_first_read_stored_them() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)

    def greeting(n: int, seconds: int) -> Message:
        return Message.model_construct(
            id=PydanticObjectId(),
            parent_id=None,
            unique_key=f"c1:greeting:{n}",
            created_at=at + timedelta(seconds=seconds),
        )

    # a concurrent first read with an earlier clock stored the alternate greeting, another the greeting
    alternate, first = greeting(1, 0), greeting(0, 5)

    tree = Tree([alternate, first])

    assert [str(m.id) for m in tree.roots] == [str(first.id), str(alternate.id)]
    assert tree.active_leaf(None) is first


async def test_greetings_are_shown_with_the_character_and_persona_names_filled_in(
    chat: Chat, fleet: Fleet, alice: FleetUser
) -> None:
    character = fleet.character(
        alice,
        name="Mira",
        greeting="Evening, {{user}}. I am {{char}}.",
        alternate_greetings=["<USER>? <BOT> here."],
    )
    conversation = fleet.conversation(alice, character["id"])

    items = (await chat.path(conversation["id"]))["items"]
    alternates = await chat.siblings(items[0]["id"])

    user = conversation["persona"]["name"]
    assert items[0]["content"] == f"Evening, {user}. I am Mira."
    assert [m["content"] for m in alternates] == [f"Evening, {user}. I am Mira.", f"{user}? Mira here."]


async def test_a_character_without_greetings_is_answered_from_the_first_message(
    chat: Chat, fleet: Fleet, alice: FleetUser
) -> None:
    character = fleet.character(alice, greeting="", alternate_greetings=[])
    conversation = fleet.conversation(alice, character["id"])
    assert (await chat.path(conversation["id"]))["items"] == []

    sent = await chat.send(conversation["id"], "Hello")
    edited = await chat.edit(sent["user_message"]["id"], "Hi", regenerate=True)

    assert sent["user_message"]["parent_id"] is None and sent["reply"]["status"] == "completed"
    assert edited.status_code == 201, edited.text
    branch = edited.json()
    assert branch["user_message"]["parent_id"] is None
    assert (branch["user_message"]["sibling_index"], branch["user_message"]["sibling_count"]) == (1, 2)
    assert await chat.path_ids(conversation["id"]) == [branch["user_message"]["id"], branch["reply"]["id"]]


# Regenerate.


async def test_regenerate_adds_an_active_sibling_reply_and_charges_its_cost(
    chat: Chat, fleet: Fleet, alice: FleetUser, settings: Settings
) -> None:
    conversation = fleet.conversation(alice)
    first = (await chat.send(conversation["id"], "Hello"))["reply"]
    before = fleet.balance(alice)

    response = await chat.post(first["id"], "regenerate")

    assert response.status_code == 201, response.text
    reply = response.json()["reply"]
    assert reply["id"] != first["id"] and reply["parent_id"] == first["parent_id"]
    assert reply["status"] == "completed" and (reply["sibling_index"], reply["sibling_count"]) == (1, 2)
    assert (await chat.path_ids(conversation["id"]))[-1] == reply["id"]
    assert [s["id"] for s in await chat.siblings(first["id"])] == [first["id"], reply["id"]]
    cost = _cost(settings, reply["generation"]["usage"]["completion_tokens"])
    assert reply["generation"]["cost"] == cost
    await _settled(fleet, alice, before - cost)


async def test_regenerate_and_continue_need_no_body(
    client: httpx.AsyncClient, chat: Chat, fleet: Fleet, alice: FleetUser
) -> None:
    conversation = fleet.conversation(alice)
    first = (await chat.send(conversation["id"], "Hello"))["reply"]

    regenerated = await client.post(f"/api/v1/messages/{first['id']}/regenerate", headers=alice.headers)
    swipe = regenerated.json()["reply"]
    continued = await client.post(f"/api/v1/messages/{swipe['id']}/continue", headers=alice.headers)

    assert regenerated.status_code == 201, regenerated.text
    assert swipe["parent_id"] == first["parent_id"] and swipe["status"] == "completed"
    assert continued.status_code == 200, continued.text
    assert continued.json()["reply"]["id"] == swipe["id"]


async def test_regenerating_a_user_message_or_a_greeting_is_409(
    chat: Chat, fleet: Fleet, alice: FleetUser
) -> None:
    conversation = fleet.conversation(alice)
    sent = await chat.send(conversation["id"], "Hello")
    greeting_id = (await chat.path_ids(conversation["id"]))[0]

    of_user = await chat.post(sent["user_message"]["id"], "regenerate")
    of_greeting = await chat.post(greeting_id, "regenerate")

    assert of_user.status_code == 409 and of_user.json()["error"]["code"] == "not_a_reply"
    assert of_greeting.status_code == 409 and of_greeting.json()["error"]["code"] == "not_a_reply"
    assert len(await chat.path_ids(conversation["id"])) == 3


# Continue.


@pytest.fixture(scope="module")
def priced_settings(
    mongodb_url: str,
    redis_url: str,
    user_service: ServiceProcess,
    character_service: ServiceProcess,
    conversation_service: ServiceProcess,
    llm_service: ServiceProcess,
) -> Settings:
    """A credit a token, so that a continuation's price tells how many tokens were paid."""
    return make_settings(
        mongodb_url,
        redis_url,
        user_service,
        character_service,
        conversation_service,
        llm_service,
        cost_per_1k_tokens=1000,
    )


@pytest.fixture(scope="module")
def priced_url(priced_settings: Settings) -> Iterator[str]:
    priced_app: FastAPI = create_app(priced_settings)
    with serve_app(priced_app) as url:
        yield url


@pytest.fixture
async def priced(priced_url: str, alice: FleetUser) -> AsyncIterator[Chat]:
    async with httpx.AsyncClient(base_url=priced_url, timeout=60) as http:
        yield Chat(http, alice)


async def test_continue_extends_the_last_reply_and_charges_only_the_continuation(
    priced: Chat, fleet: Fleet, alice: FleetUser
) -> None:
    conversation = fleet.conversation(alice)
    first = (await priced.send(conversation["id"], "Tell me a long story about the sky", max_tokens=3))[
        "reply"
    ]
    before = fleet.balance(alice)

    response = await priced.post(first["id"], "continue", max_tokens=2)

    assert response.status_code == 200, response.text
    reply = response.json()["reply"]
    assert reply["id"] == first["id"] and reply["status"] == "completed"
    assert reply["content"].startswith(first["content"]) and len(reply["content"]) > len(first["content"])
    assert reply["generation"]["usage"]["completion_tokens"] == 2
    assert reply["generation"]["cost"] == 1 + 2  # a credit a message, a credit a token of the continuation
    await _settled(fleet, alice, before - 3)
    assert (await priced.path_ids(conversation["id"]))[-1] == first["id"]


async def test_continue_of_a_reply_that_is_not_the_active_leaf_is_409(
    chat: Chat, fleet: Fleet, alice: FleetUser
) -> None:
    conversation = fleet.conversation(alice)
    first = (await chat.send(conversation["id"], "Hello"))["reply"]
    await chat.send(conversation["id"], "And then?")
    greeting_id = (await chat.path_ids(conversation["id"]))[0]

    earlier = await chat.post(first["id"], "continue")
    greeting = await chat.post(greeting_id, "continue")

    assert earlier.status_code == 409 and earlier.json()["error"]["code"] == "not_the_last_reply"
    assert greeting.status_code == 409


async def test_a_streamed_continue_streams_only_the_continuation(
    chat: Chat, fleet: Fleet, alice: FleetUser
) -> None:
    conversation = fleet.conversation(alice)
    first = (await chat.send(conversation["id"], "Tell me a long story about the sky", max_tokens=3))["reply"]

    response = await chat.post(first["id"], "continue", max_tokens=2, stream=True)

    assert response.status_code == 200, response.text
    events = sse_events(response.text)
    names = [name for _, name, _ in events]
    assert names[0] == "message.created" and names[-1] == "message.completed"
    assert names.count("message.completed") == 1
    completed = events[-1][2]
    streamed = "".join(data["text"] for _, name, data in events if name == "delta")
    assert completed["content"] == first["content"] + streamed and streamed


async def test_a_stopped_reply_can_be_continued(
    chat: Chat, fleet: Fleet, alice: FleetUser, standin: StandinProcess
) -> None:
    conversation = fleet.conversation(alice)
    standin.configure(tokens_per_second=20)
    sending = asyncio.ensure_future(chat.send(conversation["id"], "one two three four five six seven eight"))
    reply_id = await _generating_reply(chat, conversation["id"])
    stop = await chat.client.post(f"/api/v1/messages/{reply_id}/stop", headers=alice.headers)
    assert stop.status_code == 202, stop.text
    stopped = (await sending)["reply"]
    assert stopped["status"] == "stopped"
    standin.configure(tokens_per_second=0)

    response = await chat.post(reply_id, "continue", max_tokens=4)

    assert response.status_code == 200, response.text
    reply = response.json()["reply"]
    assert reply["status"] == "completed"
    assert reply["content"].startswith(stopped["content"]) and len(reply["content"]) > len(stopped["content"])


async def test_continuing_a_failed_reply_is_409_not_continuable(
    chat: Chat, fleet: Fleet, alice: FleetUser, standin: StandinProcess
) -> None:
    conversation = fleet.conversation(alice)
    standin.configure(failure="crash")
    sent = await chat.client.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"content": "Hello", **FAST},
        headers=alice.headers,
    )
    assert sent.status_code >= 500  # a plain send answers with the failure that failed its reply
    failed_id = sent.json()["error"]["details"]["reply_id"]
    standin.configure(failure=None)
    before = fleet.balance(alice)

    response = await chat.post(failed_id, "continue")

    assert response.status_code == 409 and response.json()["error"]["code"] == "not_continuable"
    assert fleet.balance(alice) == before


# Select.


async def test_select_moves_the_active_path_to_the_newest_branch_of_the_sibling(
    chat: Chat, fleet: Fleet, alice: FleetUser
) -> None:
    conversation = fleet.conversation(alice)
    first = await chat.send(conversation["id"], "Hello")
    deeper = await chat.send(conversation["id"], "Go on")
    other = (await chat.post(first["reply"]["id"], "regenerate")).json()["reply"]
    assert (await chat.path_ids(conversation["id"]))[-1] == other["id"]

    response = await chat.post(first["reply"]["id"], "select")

    assert response.status_code == 200, response.text
    ids = [m["id"] for m in response.json()["items"]]
    assert ids[-3:] == [first["reply"]["id"], deeper["user_message"]["id"], deeper["reply"]["id"]]
    assert await chat.path_ids(conversation["id"]) == ids
    selected = next(m for m in response.json()["items"] if m["id"] == first["reply"]["id"])
    assert (selected["sibling_index"], selected["sibling_count"]) == (0, 2)


async def test_selecting_an_alternate_greeting_starts_the_path_there(
    chat: Chat, fleet: Fleet, alice: FleetUser
) -> None:
    conversation = fleet.conversation(alice)
    await chat.send(conversation["id"], "Hello")
    greeting_id = (await chat.path_ids(conversation["id"]))[0]
    alternate = (await chat.siblings(greeting_id))[1]

    response = await chat.post(alternate["id"], "select")

    assert response.status_code == 200, response.text
    assert await chat.path_ids(conversation["id"]) == [alternate["id"]]
    sent = await chat.send(conversation["id"], "Ahoy to you")
    assert sent["user_message"]["parent_id"] == alternate["id"]


# Edit as a branch.


async def test_editing_a_user_message_adds_an_active_sibling_and_keeps_the_old_one(
    chat: Chat, fleet: Fleet, alice: FleetUser
) -> None:
    conversation = fleet.conversation(alice)
    sent = await chat.send(conversation["id"], "Hello")
    old = sent["user_message"]

    response = await chat.edit(old["id"], "Hello there")

    assert response.status_code == 201, response.text
    body = response.json()
    edited = body["user_message"]
    assert body["reply"] is None
    assert edited["content"] == "Hello there" and edited["parent_id"] == old["parent_id"]
    assert (edited["sibling_index"], edited["sibling_count"]) == (1, 2)
    assert (await chat.path_ids(conversation["id"]))[-1] == edited["id"]
    assert [s["content"] for s in await chat.siblings(old["id"])] == ["Hello", "Hello there"]
    assert [s["id"] for s in await chat.siblings(sent["reply"]["id"])] == [sent["reply"]["id"]]


async def test_editing_with_regenerate_adds_the_branch_and_a_reply_to_it(
    chat: Chat, fleet: Fleet, alice: FleetUser
) -> None:
    conversation = fleet.conversation(alice)
    sent = await chat.send(conversation["id"], "Hello")

    response = await chat.edit(sent["user_message"]["id"], "Hello there", regenerate=True)

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["user_message"]["content"] == "Hello there"
    assert (body["user_message"]["sibling_index"], body["user_message"]["sibling_count"]) == (1, 2)
    assert body["reply"]["parent_id"] == body["user_message"]["id"]
    assert body["reply"]["status"] == "completed" and "Hello there" in body["reply"]["content"]
    assert (await chat.path_ids(conversation["id"]))[-2:] == [body["user_message"]["id"], body["reply"]["id"]]


async def test_editing_a_reply_is_409(chat: Chat, fleet: Fleet, alice: FleetUser) -> None:
    conversation = fleet.conversation(alice)
    sent = await chat.send(conversation["id"], "Hello")
    greeting_id = (await chat.path_ids(conversation["id"]))[0]

    of_reply = await chat.edit(sent["reply"]["id"], "I say something else")
    of_greeting = await chat.edit(greeting_id, "Another greeting")

    assert of_reply.status_code == 409 and of_reply.json()["error"]["code"] == "not_a_user_message"
    assert of_greeting.status_code == 409
    assert len(await chat.siblings(sent["reply"]["id"])) == 1


async def test_editing_while_a_reply_generates_is_409(
    chat: Chat, fleet: Fleet, alice: FleetUser, standin: StandinProcess
) -> None:
    conversation = fleet.conversation(alice)
    first = await chat.send(conversation["id"], "Hello")
    standin.configure(tokens_per_second=20)
    sending = asyncio.ensure_future(chat.send(conversation["id"], "one two three four five six seven eight"))
    reply_id = await _generating_reply(chat, conversation["id"])

    during = await chat.edit(first["user_message"]["id"], "Hello there")
    await chat.client.post(f"/api/v1/messages/{reply_id}/stop", headers=alice.headers)
    await sending
    after = await chat.edit(first["user_message"]["id"], "Hello there")

    assert during.status_code == 409 and during.json()["error"]["code"] == "generation_in_progress"
    assert after.status_code == 201, after.text
    assert len(await chat.siblings(first["user_message"]["id"])) == 2


async def test_an_edit_longer_than_the_message_limit_is_422(
    chat: Chat, fleet: Fleet, alice: FleetUser, settings: Settings
) -> None:
    conversation = fleet.conversation(alice)
    sent = await chat.send(conversation["id"], "Hello")

    response = await chat.edit(sent["user_message"]["id"], "x" * (settings.max_message_chars + 1))

    assert response.status_code == 422, response.text
    assert len(await chat.siblings(sent["user_message"]["id"])) == 1


async def test_whitespace_only_text_and_an_over_long_prompt_preview_are_422(
    chat: Chat, fleet: Fleet, alice: FleetUser, settings: Settings
) -> None:
    conversation = fleet.conversation(alice)
    sent = await chat.send(conversation["id"], "Hello")
    before = await chat.path_ids(conversation["id"])

    blank_send = await chat.client.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"content": " \n\t\u3000 ", **FAST},
        headers=alice.headers,
    )
    blank_edit = await chat.edit(sent["user_message"]["id"], "   ")
    too_long = await chat.client.get(
        f"/api/v1/conversations/{conversation['id']}/prompt",
        params={"content": "x" * (settings.max_message_chars + 1)},
        headers=alice.headers,
    )

    assert blank_send.status_code == 422, blank_send.text
    assert blank_send.json()["error"]["details"][0]["loc"] == ["body", "content"]
    assert blank_edit.status_code == 422, blank_edit.text
    assert too_long.status_code == 422, too_long.text
    assert too_long.json()["error"]["code"] == "validation_error"
    assert await chat.path_ids(conversation["id"]) == before
    assert len(await chat.siblings(sent["user_message"]["id"])) == 1


# Delete.


async def test_delete_removes_the_message_and_its_descendants_and_the_path_falls_back_to_the_parent(
    chat: Chat, fleet: Fleet, alice: FleetUser
) -> None:
    conversation = fleet.conversation(alice)
    first = await chat.send(conversation["id"], "Hello")
    other = (await chat.post(first["reply"]["id"], "regenerate")).json()["reply"]
    deeper = await chat.send(conversation["id"], "Go on")

    response = await chat.delete(other["id"])

    assert response.status_code == 204, response.text
    for gone in (other["id"], deeper["user_message"]["id"], deeper["reply"]["id"]):
        assert (
            await chat.client.get(f"/api/v1/messages/{gone}/siblings", headers=chat.user.headers)
        ).status_code == 404
    ids = await chat.path_ids(conversation["id"])
    assert ids[-2:] == [first["user_message"]["id"], first["reply"]["id"]]
    reply = (await chat.path(conversation["id"]))["items"][-1]
    assert (reply["sibling_index"], reply["sibling_count"]) == (0, 1)


async def test_deleting_a_user_message_falls_back_to_the_newest_branch_of_its_parent(
    chat: Chat, fleet: Fleet, alice: FleetUser
) -> None:
    conversation = fleet.conversation(alice)
    first = await chat.send(conversation["id"], "Hello")
    edited = (await chat.edit(first["user_message"]["id"], "Hi", regenerate=True)).json()

    response = await chat.delete(edited["user_message"]["id"])

    assert response.status_code == 204, response.text
    ids = await chat.path_ids(conversation["id"])
    assert ids[-2:] == [first["user_message"]["id"], first["reply"]["id"]]


async def test_delete_while_a_reply_generates_is_409(
    chat: Chat, fleet: Fleet, alice: FleetUser, standin: StandinProcess
) -> None:
    conversation = fleet.conversation(alice)
    standin.configure(tokens_per_second=20)
    sending = asyncio.ensure_future(chat.send(conversation["id"], "one two three four five six seven eight"))
    reply_id = await _generating_reply(chat, conversation["id"])
    user_message_id = (await chat.path_ids(conversation["id"]))[-2]

    of_reply = await chat.delete(reply_id)
    of_its_question = await chat.delete(user_message_id)

    await chat.client.post(f"/api/v1/messages/{reply_id}/stop", headers=alice.headers)
    await sending
    assert of_reply.status_code == 409 and of_its_question.status_code == 409
    assert (await chat.path_ids(conversation["id"]))[-1] == reply_id


async def test_deleting_another_branch_while_a_reply_generates_is_409_until_it_ends(
    chat: Chat, fleet: Fleet, alice: FleetUser, standin: StandinProcess
) -> None:
    conversation = fleet.conversation(alice)
    first = await chat.send(conversation["id"], "Hello")
    other = (await chat.post(first["reply"]["id"], "regenerate")).json()["reply"]
    standin.configure(tokens_per_second=20)
    sending = asyncio.ensure_future(chat.send(conversation["id"], "one two three four five six seven eight"))
    reply_id = await _generating_reply(chat, conversation["id"])

    # the generating reply answers `other`; deleting its older sibling could race the reply's storing
    during = await chat.delete(first["reply"]["id"])
    await chat.client.post(f"/api/v1/messages/{reply_id}/stop", headers=alice.headers)
    await sending
    after = await chat.delete(first["reply"]["id"])

    assert during.status_code == 409 and during.json()["error"]["code"] == "generation_in_progress"
    assert after.status_code == 204, after.text
    assert (await chat.path_ids(conversation["id"]))[-1] == reply_id
    assert [s["id"] for s in await chat.siblings(other["id"])] == [other["id"]]


async def test_a_delete_racing_an_edit_below_it_never_leaves_an_orphan(
    chat: Chat, fleet: Fleet, alice: FleetUser
) -> None:
    conversation = fleet.conversation(alice)
    first = await chat.send(conversation["id"], "Hello")
    for n in range(10):
        second = await chat.send(conversation["id"], f"Go on {n}")

        deleted, edited = await asyncio.gather(
            chat.delete(first["reply"]["id"]), chat.edit(second["user_message"]["id"], f"Stop {n}")
        )

        assert deleted.status_code in (204, 409), deleted.text
        assert edited.status_code in (201, 404, 409), edited.text
        items = (await chat.path(conversation["id"]))["items"]
        assert items[0]["parent_id"] is None
        assert all(b["parent_id"] == a["id"] for a, b in zip(items, items[1:], strict=False))
        if deleted.status_code == 204:
            first = await chat.send(conversation["id"], "Hello again")
            assert first["user_message"]["parent_id"] == items[-1]["id"]


async def test_a_send_under_a_message_deleted_at_the_same_time_never_leaves_an_orphan(
    chat: Chat, fleet: Fleet, alice: FleetUser
) -> None:
    conversation = fleet.conversation(alice)
    outcomes = set()
    for n in range(10):
        exchange = await chat.send(conversation["id"], f"Hello {n}")

        deleted, sent = await asyncio.gather(
            chat.delete(exchange["user_message"]["id"]),
            chat.client.post(
                f"/api/v1/conversations/{conversation['id']}/messages",
                json={"content": f"Go on {n}", "parent_id": exchange["reply"]["id"], **FAST},
                headers=alice.headers,
            ),
        )

        assert deleted.status_code in (204, 409), deleted.text
        assert sent.status_code in (201, 404, 409), sent.text
        outcomes.add((deleted.status_code, sent.status_code))
        items = (await chat.path(conversation["id"]))["items"]
        assert items[0]["parent_id"] is None
        assert all(b["parent_id"] == a["id"] for a, b in zip(items, items[1:], strict=False))
    assert any(status == 204 for status, _ in outcomes)


# The active path's pages.


async def test_the_path_pages_with_before_and_after_and_says_what_is_left(
    chat: Chat, fleet: Fleet, alice: FleetUser
) -> None:
    conversation = fleet.conversation(alice)
    for n in range(3):
        await chat.send(conversation["id"], f"Message {n}")
    everything = await chat.path(conversation["id"])
    ids = [m["id"] for m in everything["items"]]
    assert len(ids) == 7 and not everything["has_more_before"] and not everything["has_more_after"]

    newest = await chat.path(conversation["id"], limit=3)
    before = await chat.path(conversation["id"], limit=3, before=ids[4])
    oldest = await chat.path(conversation["id"], limit=3, before=ids[1])
    after = await chat.path(conversation["id"], limit=2, after=ids[2])
    last = await chat.path(conversation["id"], limit=5, after=ids[4])
    none_after = await chat.path(conversation["id"], after=ids[6])

    def page(body: dict[str, Any]) -> tuple[list[str], bool, bool]:
        return [m["id"] for m in body["items"]], body["has_more_before"], body["has_more_after"]

    assert page(newest) == (ids[4:], True, False)
    assert page(before) == (ids[1:4], True, True)
    assert page(oldest) == (ids[:1], False, True)
    assert page(after) == (ids[3:5], True, True)
    assert page(last) == (ids[5:], True, False)
    assert page(none_after) == ([], True, False)


async def test_an_unknown_cursor_or_a_bad_limit_is_refused(
    chat: Chat, fleet: Fleet, alice: FleetUser
) -> None:
    conversation = fleet.conversation(alice)
    sent = await chat.send(conversation["id"], "Hello")
    off_path = (await chat.post(sent["reply"]["id"], "regenerate")).json()["reply"]
    base = f"/api/v1/conversations/{conversation['id']}/messages"

    responses = [
        await chat.client.get(base, params={"before": "0" * 24}, headers=alice.headers),
        await chat.client.get(base, params={"after": "nonsense"}, headers=alice.headers),
        await chat.client.get(base, params={"after": sent["reply"]["id"]}, headers=alice.headers),
    ]
    limits = [
        await chat.client.get(base, params={"limit": limit}, headers=alice.headers) for limit in (0, 201, "x")
    ]
    cursor = sent["user_message"]["id"]
    both = await chat.client.get(base, params={"before": cursor, "after": cursor}, headers=alice.headers)

    assert [r.status_code for r in responses] == [404, 404, 404], off_path
    assert {r.json()["error"]["code"] for r in responses} == {"message_not_found"}
    assert [r.status_code for r in limits] == [422, 422, 422]
    assert both.status_code == 422, both.text


# The prompt and impersonation.


async def test_the_prompt_shows_messages_sections_and_budget_but_never_the_creator_notes(
    chat: Chat, fleet: Fleet, alice: FleetUser
) -> None:
    character = fleet.character(alice, creator_notes="SECRET-NOTES for people only")
    conversation = fleet.conversation(alice, character["id"])
    await chat.send(conversation["id"], "Hello")

    response = await chat.client.get(
        f"/api/v1/conversations/{conversation['id']}/prompt",
        params={"content": "What next?"},
        headers=alice.headers,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert {"messages", "sections", "budget"} <= set(body)
    assert body["messages"][-1]["content"].endswith("What next?")
    assert "SECRET-NOTES" not in response.text


async def test_impersonate_returns_a_suggestion_charges_it_and_stores_nothing(
    chat: Chat, fleet: Fleet, alice: FleetUser, settings: Settings
) -> None:
    conversation = fleet.conversation(alice)
    await chat.send(conversation["id"], "Hello")
    ids = await chat.path_ids(conversation["id"])
    before = fleet.balance(alice)

    response = await chat.client.post(
        f"/api/v1/conversations/{conversation['id']}/impersonate", json=FAST, headers=alice.headers
    )

    assert response.status_code == 200, response.text
    suggestion = response.json()
    assert suggestion["content"] and suggestion["cost"] >= settings.cost_per_message
    await _settled(fleet, alice, before - suggestion["cost"])
    assert await chat.path_ids(conversation["id"]) == ids
    assert len(await chat.siblings(ids[-1])) == 1


async def _generating_reply(chat: Chat, conversation_id: str) -> str:
    """The id of the reply being generated at the end of the path, once there is one."""
    found: list[str] = []

    async def generating() -> bool:
        items = (await chat.path(conversation_id))["items"]
        if items and items[-1]["status"] == "generating":
            found.append(items[-1]["id"])
            return True
        return False

    for _ in range(100):
        if await generating():
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError("no reply started generating within 5 s")
