"""When the model side fails (llm-service or LM Studio away, too slow, or dropping the stream): a
clear error naming the dependency, the user message kept, the reply `failed` with the error code,
and the credits given back, except for a part generated before the failure, which is paid like a
stopped reply's (the issue's rule: "partial: only the generated part")."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from chat_common.embedded import free_port
from chat_common.testing import ServiceProcess
from chat_common.testing.fleet import FleetUser, run_llm_service
from lmstudio_client.testing import StandinProcess
from tests.conftest import INITIAL_CREDITS, Fleet
from tests.test_chat import sse_events
from tests.test_jobs import LONG, reply_ledger, wait_until


@pytest.fixture(scope="module")
def lmstudio_away_llm_service(user_service: ServiceProcess, data_dir: Path) -> Iterator[ServiceProcess]:
    """An llm-service whose LM Studio is not running."""
    with run_llm_service(f"http://127.0.0.1:{free_port()}", user_service.url, data_dir) as service:
        yield service


@pytest.fixture(scope="module")
def impatient_llm_service(
    standin: StandinProcess, user_service: ServiceProcess, data_dir: Path
) -> Iterator[ServiceProcess]:
    """An llm-service that gives up on LM Studio after 1 s without a token."""
    with run_llm_service(
        standin.url,
        user_service.url,
        data_dir,
        FIRST_TOKEN_TIMEOUT_SECONDS="1",
        IDLE_TIMEOUT_SECONDS="1",
    ) as service:
        yield service


async def send(url: str, user: FleetUser, conversation_id: str, *, stream: bool) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        return await http.post(
            f"/api/v1/conversations/{conversation_id}/messages",
            json={"content": LONG, "stream": stream},
            headers=user.headers,
        )


async def stored_path(
    client: httpx.AsyncClient, user: FleetUser, conversation_id: str
) -> list[dict[str, Any]]:
    listed = await client.get(f"/api/v1/conversations/{conversation_id}/messages", headers=user.headers)
    return list(listed.json()["items"])


async def assert_failed_and_released(
    client: httpx.AsyncClient, fleet: Fleet, user: FleetUser, conversation_id: str, code: str, before: int
) -> dict[str, Any]:
    """The user message is stored, the reply after it failed with `code`, nothing charged."""
    *_, user_message, reply = await stored_path(client, user, conversation_id)
    assert user_message["role"] == "user" and user_message["content"] == LONG
    assert reply["status"] == "failed" and reply["generation"]["error_code"] == code
    assert reply["generation"]["cost"] == 0
    await wait_until(lambda: fleet.balance(user) == before)
    assert sum(r["amount"] for r in reply_ledger(fleet, user, reply["id"])) == 0
    return reply


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "plain"])
async def test_llm_service_away_fails_the_reply_naming_it_and_gives_the_credits_back(
    stream: bool, client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser, extra_app: Any
) -> None:
    url, _ = extra_app(llm_service_url=f"http://127.0.0.1:{free_port()}")
    conversation = fleet.conversation(alice)
    before = fleet.balance(alice)

    response = await send(url, alice, conversation["id"], stream=stream)

    if stream:
        assert response.status_code == 200
        name, error = sse_events(response.text)[-1][1:]
        assert name == "error"
    else:
        assert response.status_code == 502, response.text
        error = response.json()["error"]
    assert error["code"] == "llm_error" and error["details"]["service"] == "llm-service"
    await assert_failed_and_released(client, fleet, alice, conversation["id"], "llm_error", before)


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "plain"])
async def test_lm_studio_away_fails_the_reply_naming_it_and_gives_the_credits_back(
    stream: bool,
    client: httpx.AsyncClient,
    fleet: Fleet,
    alice: FleetUser,
    extra_app: Any,
    lmstudio_away_llm_service: ServiceProcess,
) -> None:
    url, _ = extra_app(llm_service_url=lmstudio_away_llm_service.url)
    conversation = fleet.conversation(alice)
    before = fleet.balance(alice)

    response = await send(url, alice, conversation["id"], stream=stream)

    if stream:
        name, error = sse_events(response.text)[-1][1:]
        assert name == "error"
    else:
        assert response.status_code == 503, response.text
        error = response.json()["error"]
    assert error["code"] == "llm_unavailable" and error["details"]["service"] == "lmstudio"
    await assert_failed_and_released(client, fleet, alice, conversation["id"], "llm_unavailable", before)


async def test_a_failed_replys_end_read_back_from_storage_still_names_the_dependency(
    fleet: Fleet, alice: FleetUser, extra_app: Any, lmstudio_away_llm_service: ServiceProcess
) -> None:
    """Its events expired from Redis: the end is told from MongoDB, with the details it had live."""
    url, _ = extra_app(llm_service_url=lmstudio_away_llm_service.url, stream_retention_seconds=1)
    conversation = fleet.conversation(alice)

    response = await send(url, alice, conversation["id"], stream=False)
    reply_id = response.json()["error"]["details"]["reply_id"]
    await asyncio.sleep(1.5)  # its Redis stream expires
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        replayed = await http.get(f"/api/v1/messages/{reply_id}/stream", headers=alice.headers)

    name, error = sse_events(replayed.text)[-1][1:]
    assert name == "error" and error["code"] == "llm_unavailable"
    assert error["details"]["service"] == "lmstudio"


async def test_lm_studio_slower_than_the_timeout_fails_the_reply_and_gives_the_credits_back(
    client: httpx.AsyncClient,
    fleet: Fleet,
    alice: FleetUser,
    standin: StandinProcess,
    extra_app: Any,
    impatient_llm_service: ServiceProcess,
) -> None:
    standin.configure(first_token_delay=3)
    url, _ = extra_app(llm_service_url=impatient_llm_service.url)
    conversation = fleet.conversation(alice)
    before = fleet.balance(alice)

    response = await send(url, alice, conversation["id"], stream=False)

    assert response.status_code == 504, response.text
    error = response.json()["error"]
    assert error["code"] == "llm_timeout" and error["details"]["service"] == "lmstudio"
    await assert_failed_and_released(client, fleet, alice, conversation["id"], "llm_timeout", before)


async def test_llm_service_silent_longer_than_the_idle_timeout_fails_the_reply_and_frees_the_conversation(
    client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser, standin: StandinProcess, extra_app: Any
) -> None:
    standin.configure(first_token_delay=4)  # llm-service itself waits up to 300 s for it
    url, _ = extra_app(llm_idle_timeout_seconds=1)
    conversation = fleet.conversation(alice)
    before = fleet.balance(alice)

    response = await send(url, alice, conversation["id"], stream=False)

    assert response.status_code == 504, response.text
    error = response.json()["error"]
    assert error["code"] == "llm_timeout" and error["details"]["service"] == "llm-service"
    assert error["details"]["reply_id"] and error["details"]["user_message_id"]
    await assert_failed_and_released(client, fleet, alice, conversation["id"], "llm_timeout", before)
    standin.configure(first_token_delay=0)
    again = await send(url, alice, conversation["id"], stream=False)
    assert again.status_code == 201, again.text


@pytest.mark.parametrize("failure", ["disconnect", "stall"])
async def test_a_stream_dropped_after_some_tokens_fails_and_charges_only_the_generated_part(
    failure: str,
    client: httpx.AsyncClient,
    fleet: Fleet,
    alice: FleetUser,
    standin: StandinProcess,
    settings: Settings,
    extra_app: Any,
    impatient_llm_service: ServiceProcess,
) -> None:
    # paced, so that the pieces before the failure arrive apart from it
    standin.configure(failure=failure, disconnect_after=4, stall_after=4, tokens_per_second=50)
    url, _ = extra_app(llm_service_url=impatient_llm_service.url)
    conversation = fleet.conversation(alice)
    before = fleet.balance(alice)

    response = await send(url, alice, conversation["id"], stream=True)

    events = sse_events(response.text)
    name, error = events[-1][1:]
    streamed = "".join(data["text"] for _, n, data in events if n == "delta")
    assert name == "error" and error["details"]["service"] == "lmstudio"
    code = error["code"]
    assert code == ("llm_timeout" if failure == "stall" else "llm_error")
    *_, user_message, reply = await stored_path(client, alice, conversation["id"])
    assert user_message["content"] == LONG
    assert reply["status"] == "failed" and reply["generation"]["error_code"] == code
    assert reply["content"] == streamed and streamed  # the generated part is kept
    tokens = reply["generation"]["usage"]["completion_tokens"]
    assert tokens == 4
    cost = settings.cost_per_message + -(-tokens * settings.cost_per_1k_tokens // 1000)
    assert reply["generation"]["cost"] == cost
    await wait_until(lambda: fleet.balance(alice) == before - cost)
    assert sum(r["amount"] for r in reply_ledger(fleet, alice, reply["id"])) == -cost


async def test_a_plain_send_whose_reply_times_out_midway_is_a_504_naming_lmstudio(
    fleet: Fleet,
    alice: FleetUser,
    standin: StandinProcess,
    extra_app: Any,
    impatient_llm_service: ServiceProcess,
) -> None:
    standin.configure(failure="stall", stall_after=4, tokens_per_second=50)
    url, _ = extra_app(llm_service_url=impatient_llm_service.url)
    conversation = fleet.conversation(alice)

    response = await send(url, alice, conversation["id"], stream=False)

    assert response.status_code == 504, response.text
    error = response.json()["error"]
    assert error["code"] == "llm_timeout" and error["details"]["service"] == "lmstudio"


async def test_a_continuation_that_fails_leaves_the_reply_it_continued_as_it_was(
    client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser, standin: StandinProcess
) -> None:
    conversation = fleet.conversation(alice)
    sent = await client.post(
        f"/api/v1/conversations/{conversation['id']}/messages", json={"content": "Hi"}, headers=alice.headers
    )
    reply = sent.json()["reply"]
    await wait_until(lambda: fleet.balance(alice) == INITIAL_CREDITS - reply["generation"]["cost"])
    standin.configure(failure="crash")

    continued = await client.post(f"/api/v1/messages/{reply['id']}/continue", json={}, headers=alice.headers)

    assert continued.status_code == 502, continued.text
    assert continued.json()["error"]["code"] == "model_crashed"
    *_, after = await stored_path(client, alice, conversation["id"])
    assert after["id"] == reply["id"] and after["status"] == "completed"
    assert after["content"] == reply["content"]
    assert after["generation"]["error_code"] == "model_crashed" and after["generation"]["cost"] == 0
    await wait_until(lambda: fleet.balance(alice) == INITIAL_CREDITS - reply["generation"]["cost"])


async def test_a_continuation_after_one_refused_before_it_began_is_charged_and_can_be_continued_again(
    client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser
) -> None:
    """A continue refused before generating (no room for the reply) released its reservation; the next
    continue of the same, unchanged reply reserved under the same key: for another amount a 409, for
    the same one that released reservation handed back, the continuation generated for free and its
    commit refused forever, every later continue or delete of the reply a 503 (found by the schema
    fuzzer)."""
    conversation = fleet.conversation(alice)
    sent = await client.post(
        f"/api/v1/conversations/{conversation['id']}/messages", json={"content": "Hi"}, headers=alice.headers
    )
    reply = sent.json()["reply"]
    continue_url = f"/api/v1/messages/{reply['id']}/continue"
    await wait_until(lambda: fleet.balance(alice) == INITIAL_CREDITS - reply["generation"]["cost"])

    # no room in the (default) context for so long a reply: refused once its credits are reserved
    too_long = {"model": "nobody/none", "max_tokens": 4096}
    refused = await client.post(continue_url, json=too_long, headers=alice.headers)
    assert refused.status_code == 422, refused.text
    continued = await client.post(continue_url, json={}, headers=alice.headers)
    assert continued.status_code == 200, continued.text
    again = await client.post(continue_url, json={}, headers=alice.headers)
    assert again.status_code == 200, again.text

    costs = [r["reply"]["generation"]["cost"] for r in (sent.json(), continued.json(), again.json())]
    assert all(cost > 0 for cost in costs)
    await wait_until(lambda: fleet.balance(alice) == INITIAL_CREDITS - sum(costs))
    deleted = await client.delete(f"/api/v1/messages/{reply['id']}", headers=alice.headers)
    assert deleted.status_code == 204, deleted.text
