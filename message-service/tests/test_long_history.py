"""A long conversation with a small model, end to end: what reaches LM Studio fits its context."""

from __future__ import annotations

import httpx

from chat_common.testing.fleet import FleetUser
from lmstudio_client.testing import StandinProcess
from tests.conftest import Fleet

BOOK = {
    "scan_depth": 2,
    "token_budget": 500,
    "entries": [
        {
            "keys": ["dragon"],
            "content": "LORE: dragons nest on the Skylark's mast.",
            "enabled": True,
            "insertion_order": 1,
            "position": "before_char",
        },
        {
            "keys": ["kraken"],
            "content": "LORE: the kraken sleeps below the clouds.",
            "enabled": True,
            "insertion_order": 2,
            "position": "after_char",
        },
    ],
}


async def test_a_200_message_history_fits_a_2048_token_model_with_the_card_and_the_newest_turns(
    extra_app, fleet: Fleet, alice: FleetUser, standin: StandinProcess
) -> None:
    standin.configure(context_length=2048)
    url, _ = extra_app(default_context_length=8192)  # own Redis prefix; a wrong fallback would not fit
    character = fleet.character(
        alice,
        name="Mira",
        description="{{char}} is a sky captain who calls {{user}} 'deckhand'.",
        creator_notes="SECRET AUTHOR NOTE",
        character_book=BOOK,
    )
    conversation = fleet.conversation(alice, character["id"])
    path = f"/api/v1/conversations/{conversation['id']}/messages"
    async with httpx.AsyncClient(base_url=url, timeout=60, headers=alice.headers) as client:
        for turn in range(100):  # 100 sends: 200 messages after the greeting
            topic = "a dragon on deck" if turn == 98 else f"the weather on day {turn}"
            sent = await client.post(
                path, json={"content": f"Turn {turn}: tell me about {topic}.", "max_tokens": 48}
            )
            assert sent.status_code == 201, sent.text
        chats = [r["body"] for r in standin.requests() if r["path"].endswith("/chat/completions")]
        last = chats[-1]
        listed = await client.get(path, params={"limit": 200})

    messages = last["messages"]
    text = "\n".join(m["content"] for m in messages)
    assert len(listed.json()["items"]) == 200  # greeting and 99 exchanges on the path (the newest 200)
    assert messages[0]["role"] == "system" and "Mira is a sky captain who calls" in messages[0]["content"]
    assert "{{char}}" not in text and "{{user}}" not in text
    assert "SECRET AUTHOR NOTE" not in text
    assert messages[-1] == {"role": "user", "content": "Turn 99: tell me about the weather on day 99."}
    assert "Turn 0:" not in text  # the oldest turns were dropped to fit
    assert "LORE: dragons nest" in text  # "dragon" is in the last two messages
    assert "LORE: the kraken" not in text  # never mentioned
    assert last["max_tokens"] == 48
    # Fitted at once from the context llm-service reports: no prompt was refused and sent again.
    asked = [chat["messages"][-1]["content"] for chat in chats]
    assert len(asked) == len(set(asked))
