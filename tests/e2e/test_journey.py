"""A newcomer's first conversation, through the five services over HTTP, every response checked:
register, log in, a persona, a Character Card V2 imported, a conversation, its greeting, a message,
a streamed reply, a regenerated one, the balance and the analytics."""

from __future__ import annotations

import json
import uuid
from typing import Any

from chat_common.testing.fleet import PASSWORD, login
from tests.e2e.conftest import COST_PER_REPLY, INITIAL_CREDITS, Fleet

CARD: dict[str, Any] = {
    "spec": "chara_card_v2",
    "spec_version": "2.0",
    "data": {
        "name": "Captain Mira",
        "description": "{{char}} commands the airship Kestrel and is glad to meet {{user}}.",
        "personality": "Warm, brave, fond of tea.",
        "scenario": "The Kestrel's deck at dawn.",
        "first_mes": "Welcome aboard, {{user}}! Tea?",
        "mes_example": "<START>\n{{user}}: Where are we headed?\n{{char}}: North, past the storm.",
        "creator_notes": "A friendly test captain.",
        "system_prompt": "",
        "post_history_instructions": "",
        "alternate_greetings": ["Ahoy, {{user}}!"],
        "tags": ["adventure", "airship"],
        "creator": "e2e",
        "character_version": "1.0",
        "extensions": {},
    },
}


def test_a_newcomer_registers_imports_a_card_and_chats(fleet: Fleet) -> None:
    http = fleet.http
    suffix = uuid.uuid4().hex[:8]
    username = f"ada{suffix}"

    registered = http.post(
        f"{fleet.users}/api/v1/auth/register",
        json={
            "email": f"{username}@example.com",
            "username": username,
            "display_name": "Ada Lovelace",
            "password": PASSWORD,
        },
    )
    assert registered.status_code == 201, registered.text
    user = registered.json()
    assert user["username"] == username and user["credits"] == INITIAL_CREDITS
    assert not {"password", "hashed_password", "password_hash"} & user.keys()

    login = http.post(f"{fleet.users}/api/v1/auth/token", data={"username": username, "password": PASSWORD})
    assert login.status_code == 200, login.text
    tokens = login.json()
    assert tokens["token_type"] == "bearer" and tokens["access_token"] and tokens["refresh_token"]
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    me = http.get(f"{fleet.users}/api/v1/users/me", headers=auth)
    assert me.status_code == 200 and me.json()["id"] == user["id"]

    persona = http.post(
        f"{fleet.users}/api/v1/users/me/personas",
        json={"name": "Ada", "description": "A curious mathematician."},
        headers=auth,
    )
    assert persona.status_code == 201, persona.text
    assert persona.json()["name"] == "Ada" and persona.json()["is_default"] is True  # her first one

    imported = http.post(
        f"{fleet.characters}/api/v1/characters/import",
        files={"file": ("captain-mira.json", json.dumps(CARD), "application/json")},
        headers=auth,
    )
    assert imported.status_code == 201, imported.text
    character = imported.json()
    assert character["name"] == "Captain Mira" and character["owner_id"] == user["id"]
    assert character["greeting"] == CARD["data"]["first_mes"]
    assert character["alternate_greetings"] == CARD["data"]["alternate_greetings"]
    assert sorted(character["tags"]) == ["adventure", "airship"]
    assert character["visibility"] == "private"

    started = http.post(
        f"{fleet.conversations}/api/v1/conversations", json={"character_id": character["id"]}, headers=auth
    )
    assert started.status_code == 201, started.text
    conversation = started.json()
    assert conversation["user_id"] == user["id"] and conversation["character_id"] == character["id"]
    assert conversation["character"]["name"] == "Captain Mira"
    assert conversation["persona"]["name"] == "Ada"  # her default persona, taken without asking
    messages_url = f"{fleet.messages}/api/v1/conversations/{conversation['id']}/messages"

    greeting_page = http.get(messages_url, headers=auth)
    assert greeting_page.status_code == 200, greeting_page.text
    [greeting] = greeting_page.json()["items"]
    assert greeting["role"] == "assistant" and greeting["parent_id"] is None
    assert greeting["content"] == "Welcome aboard, Ada! Tea?"  # as the character says it: names filled in
    assert greeting["sibling_count"] == 2  # the alternate greeting is a sibling root

    sent = http.post(messages_url, json={"content": "Where are we headed?"}, headers=auth)
    assert sent.status_code == 201, sent.text
    exchange = sent.json()
    assert exchange["user_message"]["content"] == "Where are we headed?"
    assert exchange["user_message"]["parent_id"] == greeting["id"]
    plain_reply = exchange["reply"]
    assert plain_reply["role"] == "assistant" and plain_reply["status"] == "completed"
    assert plain_reply["parent_id"] == exchange["user_message"]["id"] and plain_reply["content"]
    assert plain_reply["generation"]["cost"] == COST_PER_REPLY

    events = fleet.stream(messages_url, auth, {"content": "And how long will it take?", "stream": True})
    names = [name for name, _ in events]
    assert names[0] == "message.created" and names[-1] == "message.completed", names
    assert set(names[1:-1]) == {"delta"} and len(names) > 2, names
    created, completed = events[0][1], events[-1][1]
    assert created["user_message"]["content"] == "And how long will it take?"
    assert created["user_message"]["parent_id"] == plain_reply["id"]
    streamed_text = "".join(data["text"] for name, data in events if name == "delta")
    assert completed["id"] == created["reply_id"] and completed["status"] == "completed"
    assert completed["content"] == streamed_text
    path = http.get(messages_url, headers=auth).json()["items"]
    assert [m["id"] for m in path] == [
        greeting["id"],
        exchange["user_message"]["id"],
        plain_reply["id"],
        created["user_message"]["id"],
        created["reply_id"],
    ]
    assert path[-1]["content"] == streamed_text  # what was streamed is what was stored

    regenerated = http.post(
        f"{fleet.messages}/api/v1/messages/{created['reply_id']}/regenerate", headers=auth
    )
    assert regenerated.status_code == 201, regenerated.text
    swipe = regenerated.json()["reply"]
    assert regenerated.json()["user_message"]["id"] == created["user_message"]["id"]  # answered again
    assert swipe["id"] != created["reply_id"] and swipe["status"] == "completed" and swipe["content"]
    assert swipe["parent_id"] == created["user_message"]["id"]
    assert (swipe["sibling_index"], swipe["sibling_count"]) == (1, 2)
    siblings = http.get(f"{fleet.messages}/api/v1/messages/{swipe['id']}/siblings", headers=auth)
    assert siblings.status_code == 200
    assert [m["id"] for m in siblings.json()] == [created["reply_id"], swipe["id"]]
    assert http.get(messages_url, headers=auth).json()["items"][-1]["id"] == swipe["id"]  # now active

    balance = http.get(f"{fleet.users}/api/v1/credits", headers=auth)
    assert balance.status_code == 200
    # three replies paid, the greeting free
    assert balance.json()["balance"] == INITIAL_CREDITS - 3 * COST_PER_REPLY

    analytics = http.get(f"{fleet.messages}/api/v1/analytics/me", headers=auth)
    assert analytics.status_code == 200, analytics.text
    totals = analytics.json()["totals"]
    assert (totals["messages"], totals["user_messages"], totals["replies"]) == (5, 2, 3)
    assert totals["credits_spent"] == 3 * COST_PER_REPLY


def test_what_a_newcomer_creates_is_where_its_location_says(fleet: Fleet) -> None:
    http = fleet.http
    user = fleet.register("eve")
    created = {
        "user": http.post(
            f"{fleet.users}/api/v1/auth/register",
            json={
                "email": f"loc{user.username}@example.com",
                "username": f"loc{user.username}",
                "display_name": "Located",
                "password": PASSWORD,
            },
        ),
        "persona": http.post(
            f"{fleet.users}/api/v1/users/me/personas", json={"name": "Eve"}, headers=user.headers
        ),
        "character": http.post(
            f"{fleet.characters}/api/v1/characters/import",
            files={"file": ("captain-mira.json", json.dumps(CARD), "application/json")},
            headers=user.headers,
        ),
    }
    created["conversation"] = http.post(
        f"{fleet.conversations}/api/v1/conversations",
        json={"character_id": created["character"].json()["id"]},
        headers=user.headers,
    )

    assert {name: r.status_code for name, r in created.items()} == dict.fromkeys(created, 201)
    missing = [name for name, r in created.items() if "location" not in r.headers]
    assert missing == []
    newcomer = {"Authorization": f"Bearer {login(fleet.users, f'loc{user.username}')}"}
    for name, response in created.items():
        located = http.get(
            str(response.url.join(response.headers["location"])),
            headers=newcomer if name == "user" else user.headers,
        )
        assert located.status_code == 200, (name, located.text)
        assert located.json()["id"] == response.json()["id"], name
