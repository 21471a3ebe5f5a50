"""user-service down: the rest of the fleet keeps serving what it can (tokens checked with the keys it
cached), and what needs user-service fails with a 503 naming it, storing and charging nothing."""

from __future__ import annotations

import httpx

from chat_common.testing.fleet import login
from tests.e2e.conftest import Fleet


def _names_user_service(response: httpx.Response) -> bool:
    error = response.json()["error"]
    return response.status_code == 503 and (error.get("details") or {}).get("service") == "user-service"


def test_without_user_service_reads_still_work_and_a_send_is_503_storing_and_charging_nothing(
    fleet: Fleet,
) -> None:
    dora = fleet.register("dora")
    character = fleet.character(dora)
    conversation = fleet.conversation(dora, character["id"])
    fleet.send(dora, conversation["id"], "Hello")  # every service has fetched user-service's keys by now
    path_before = [m["id"] for m in fleet.path(dora, conversation["id"])]
    balance_before = fleet.balance(dora)
    # A token no service has seen yet: it can only be checked with the cached keys.
    fresh = {"Authorization": f"Bearer {login(fleet.users, dora.username)}"}
    http = fleet.http
    messages_url = f"{fleet.messages}/api/v1/conversations/{conversation['id']}/messages"

    with fleet.user_service_stopped():
        reads = {
            "character list": http.get(f"{fleet.characters}/api/v1/characters/mine", headers=fresh),
            "character": http.get(f"{fleet.characters}/api/v1/characters/{character['id']}", headers=fresh),
            "conversation list": http.get(f"{fleet.conversations}/api/v1/conversations", headers=fresh),
            "message list": http.get(messages_url, headers=fresh),
            "model list": http.get(f"{fleet.llm}/api/v1/models", headers=fresh),
        }
        sent = http.post(messages_url, json={"content": "Are you there?"}, headers=fresh)
        started = http.post(
            f"{fleet.conversations}/api/v1/conversations",
            json={"character_id": character["id"]},
            headers=fresh,
        )
        path_during = [m["id"] for m in http.get(messages_url, headers=fresh).json()["items"]]

    assert {name: r.status_code for name, r in reads.items()} == dict.fromkeys(reads, 200)
    assert reads["character list"].json()["items"][0]["id"] == character["id"]
    assert reads["conversation list"].json()["items"][0]["id"] == conversation["id"]
    assert [m["id"] for m in reads["message list"].json()["items"]] == path_before
    assert _names_user_service(sent), sent.text
    assert "user-service" in sent.json()["error"]["message"]
    assert _names_user_service(started), started.text  # a conversation needs the persona
    assert path_during == path_before
    # user-service is back: still nothing stored half-way, nothing charged
    assert [m["id"] for m in fleet.path(dora, conversation["id"])] == path_before
    assert fleet.balance(dora) == balance_before
    assert http.get(f"{fleet.conversations}/api/v1/conversations", headers=fresh).json()["total"] == 1
