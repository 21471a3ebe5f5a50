"""Prompt building within the model's context: what is kept, what leaves first, and the numbers."""

from __future__ import annotations

from typing import Any

import pytest

from app.services.prompt import (
    Card,
    Persona,
    Prompt,
    PromptTooLongError,
    Turn,
    build_prompt,
    parse_context_overflow,
)
from app.services.tokens import TokenEstimator

ESTIMATOR = TokenEstimator()
PERSONA = Persona(name="Alex", description="{{user}} is the ship's engineer.")
FILLER = "The engines hum while the moon's dust drifts past the viewport and the crew waits for news."


def lore_entry(name: str, keys: list[str], **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "keys": keys,
        "content": f"{name}: lore for {{{{char}}}}.",
        "enabled": True,
    } | fields


ACCEPTANCE_BOOK = {
    "scan_depth": 2,
    "entries": [
        lore_entry("World", [], constant=True, insertion_order=1),
        lore_entry("Dragon", ["dragon"], insertion_order=5, position="after_char"),
        lore_entry("Castle", ["castle"], insertion_order=3),
        lore_entry("Red dragon", ["dragon"], selective=True, secondary_keys=["crimson"], insertion_order=4),
        lore_entry("Blue dragon", ["dragon"], selective=True, secondary_keys=["azure"], insertion_order=6),
        lore_entry("Ash", ["Ash"], case_sensitive=True, insertion_order=2),
    ],
}


def make_card(**fields: Any) -> Card:
    base: dict[str, Any] = {
        "name": "Mira",
        "description": "{{char}} is a starship captain who trusts {{user}}. " * 3,
        "personality": "Brave, dry humour.",
        "scenario": "{{char}} and {{user}} are stranded on a moon.",
        "creator_notes": "CREATOR-NOTE: do not send me.",
        "post_history_instructions": "Stay in character as {{char}}.",
        "example_dialogues": (
            "<START>\n{{user}}: How are the engines?\n{{char}}: Holding, {{user}}. Barely.\n"
            "<START>\n{{user}}: Any news?\n{{char}}: None yet."
        ),
        "character_book": ACCEPTANCE_BOOK,
    }
    return Card(**(base | fields))


def long_history(count: int) -> list[Turn]:
    turns = [Turn("assistant", "Welcome aboard, {{user}}. I am {{char}}.")]
    for index in range(1, count):
        role = "user" if index % 2 else "assistant"
        speaker = "{{user}}" if role == "user" else "{{char}}"
        turns.append(Turn(role, f"[turn {index:03d}] {speaker} to <BOT>/<USER>: {FILLER}"))
    return turns


def sent_history(prompt: Prompt, history: list[Turn]) -> list[dict[str, str]]:
    """The history messages sent: the last len(history) - dropped turns before the trailing system one."""
    kept = len(history) - prompt.dropped["turns"]
    return prompt.messages[-1 - kept : -1]


def substituted(turn: Turn) -> dict[str, str]:
    text = turn.content.replace("{{user}}", "Alex").replace("{{char}}", "Mira")
    return {"role": turn.role, "content": text.replace("<BOT>", "Mira").replace("<USER>", "Alex")}


@pytest.fixture
def acceptance() -> tuple[Prompt, list[Turn]]:
    history = long_history(200)
    history[10] = Turn("user", "We passed the castle long ago, and Ash was there.")
    history[198] = Turn("assistant", "The crimson glow is back, {{user}}. And the ash.")
    history[199] = Turn("user", "Is that a dragon, {{char}}?")
    prompt = build_prompt(
        make_card(), PERSONA, history, context_length=2048, max_tokens=256, estimator=ESTIMATOR
    )
    return prompt, history


def test_a_200_message_history_fits_a_2048_token_context(acceptance: tuple[Prompt, list[Turn]]) -> None:
    prompt, _ = acceptance

    assert prompt.budget == 2048 - 256
    assert prompt.estimated_tokens <= prompt.budget
    assert prompt.estimated_tokens == ESTIMATOR.estimate_messages(prompt.messages)
    assert prompt.estimated_tokens > prompt.budget * 0.9  # the room is used, not wasted


def test_the_character_and_the_newest_turns_are_kept_in_order(acceptance: tuple[Prompt, list[Turn]]) -> None:
    prompt, history = acceptance

    system = prompt.messages[0]
    assert system["role"] == "system"
    assert "Mira is a starship captain who trusts Alex." in system["content"]
    assert "Mira and Alex are stranded on a moon." in system["content"]
    assert prompt.messages[-2] == {"role": "user", "content": "Is that a dragon, Mira?"}
    assert prompt.messages[-1] == {"role": "system", "content": "Stay in character as Mira."}
    kept = len(history) - prompt.dropped["turns"]
    assert kept >= 10
    assert sent_history(prompt, history) == [substituted(turn) for turn in history[-kept:]]


def test_the_oldest_turns_are_dropped(acceptance: tuple[Prompt, list[Turn]]) -> None:
    prompt, _ = acceptance
    text = "\n".join(message["content"] for message in prompt.messages)

    assert prompt.dropped["turns"] > 100
    assert "Welcome aboard" not in text
    assert "[turn 001]" not in text
    assert "[turn 197]" in text


def test_names_are_substituted_everywhere(acceptance: tuple[Prompt, list[Turn]]) -> None:
    prompt, _ = acceptance

    for message in prompt.messages:
        lowered = message["content"].lower()
        assert "{{char}}" not in lowered and "{{user}}" not in lowered
        assert "<bot>" not in lowered and "<user>" not in lowered
    assert prompt.stop == ["\nAlex:"]


def test_creator_notes_appear_in_no_message(acceptance: tuple[Prompt, list[Turn]]) -> None:
    prompt, _ = acceptance

    assert not [m for m in prompt.messages if "CREATOR-NOTE" in m["content"]]


def test_lore_entries_appear_only_when_their_keys_do(acceptance: tuple[Prompt, list[Turn]]) -> None:
    prompt, _ = acceptance
    system = prompt.messages[0]["content"]

    assert "World: lore for Mira." in system  # constant
    assert "Dragon: lore for Mira." in system  # key in the new message
    assert "Red dragon: lore for Mira." in system  # selective, secondary key one message back
    assert "Blue dragon" not in system  # selective, secondary key absent
    assert "Castle" not in system  # key only in an old message, beyond scan_depth
    assert "Ash:" not in system  # case-sensitive key seen only as "ash" lately


def test_lore_is_placed_in_insertion_order_around_the_character(
    acceptance: tuple[Prompt, list[Turn]],
) -> None:
    prompt, _ = acceptance
    system = prompt.messages[0]["content"]

    character_at = system.index("Mira is a starship captain")
    assert system.index("World:") < system.index("Red dragon:") < character_at
    assert system.index("Dragon: lore") > character_at  # after_char
    sections = {section.name: section for section in prompt.sections}
    assert sections["lore_before_char"].detail == "sent: World, Red dragon"
    assert sections["lore_after_char"].detail == "sent: Dragon"


def full_and_costs(card: Card, history: list[Turn]) -> tuple[Prompt, dict[str, int]]:
    prompt = build_prompt(card, PERSONA, history, context_length=100_000, max_tokens=0, estimator=ESTIMATOR)
    costs = {section.name: section.tokens for section in prompt.sections}
    return prompt, costs


def build_within(card: Card, history: list[Turn], budget: int) -> Prompt:
    return build_prompt(
        card, PERSONA, history, context_length=budget + 100, max_tokens=100, estimator=ESTIMATOR
    )


def big_lore_card(**fields: Any) -> Card:
    book = {"entries": [{"keys": [], "constant": True, "name": "Big lore", "content": "Lore. " * 60}]}
    examples = "<START>\n{{user}}: " + "Question? " * 30 + "\n{{char}}: " + "Answer. " * 30
    return make_card(character_book=book, example_dialogues=examples, **fields)


def test_old_turns_leave_before_example_dialogues() -> None:
    history = long_history(12)
    full, costs = full_and_costs(big_lore_card(), history)

    prompt = build_within(big_lore_card(), history, full.estimated_tokens - costs["history"] // 2)

    assert prompt.dropped["examples"] == 0
    assert 0 < prompt.dropped["turns"] < 11
    assert prompt.estimated_tokens <= prompt.budget


def test_example_dialogues_leave_before_lore() -> None:
    history = long_history(12)
    full, costs = full_and_costs(big_lore_card(), history)
    two_turns = sum(ESTIMATOR.estimate_message(m["content"]) for m in full.messages[-4:-2])
    without_old_turns = full.estimated_tokens - costs["history"] + two_turns

    prompt = build_within(big_lore_card(), history, without_old_turns - costs["examples"] // 2)

    assert prompt.dropped["examples"] == 1
    assert prompt.dropped["lore"] == []
    assert "Lore. Lore." in prompt.messages[0]["content"]
    assert prompt.estimated_tokens <= prompt.budget


def test_lore_leaves_last_and_is_reported_by_name() -> None:
    history = long_history(12)
    full, costs = full_and_costs(big_lore_card(), history)
    bare = full.estimated_tokens - costs["history"] - costs["examples"] - costs["lore_before_char"]

    prompt = build_within(big_lore_card(), history, bare + 5)

    assert prompt.dropped == {"turns": 11, "examples": 1, "lore": ["Big lore"]}
    sections = {section.name: section for section in prompt.sections}
    assert [sections[name].kept for name in ("lore_before_char", "examples", "history")] == [False] * 3
    assert sections["history"].detail == "0 of 11 earlier turns sent"
    assert "Lore. Lore." not in prompt.messages[0]["content"]
    assert prompt.messages[-2] == substituted(history[-1])
    assert prompt.estimated_tokens <= prompt.budget


def test_the_newest_turns_outrank_examples_and_lore() -> None:
    history = long_history(12)
    full, costs = full_and_costs(big_lore_card(), history)
    bare = full.estimated_tokens - costs["history"] - costs["examples"] - costs["lore_before_char"]
    two_turns = sum(ESTIMATOR.estimate_message(m["content"]) for m in full.messages[-4:-2])

    prompt = build_within(big_lore_card(), history, bare + two_turns + 5)

    assert prompt.dropped == {"turns": 9, "examples": 1, "lore": ["Big lore"]}


def test_the_books_token_budget_is_honoured_and_reported() -> None:
    book = {
        "token_budget": 20,
        "entries": [
            {"keys": ["dragon"], "name": "Kept", "content": "short", "priority": 5},
            {"keys": ["dragon"], "name": "Too long", "content": "long " * 30, "priority": 1},
        ],
    }
    prompt = build_prompt(
        make_card(character_book=book),
        PERSONA,
        [Turn("user", "dragon")],
        context_length=4096,
        max_tokens=256,
        estimator=ESTIMATOR,
    )

    assert prompt.dropped["lore"] == ["Too long"]
    sections = {section.name: section for section in prompt.sections}
    assert sections["lore_before_char"].detail == "sent: Kept; dropped: Too long"
    assert "short" in prompt.messages[0]["content"]


@pytest.mark.parametrize("chars_per_token", [1.0, 2.0, 3.5, 6.0])
@pytest.mark.parametrize("context_length", [1024, 1500, 2048, 3000, 4096, 8192])
def test_the_budget_is_honoured_for_any_context_and_ratio(
    context_length: int, chars_per_token: float
) -> None:
    estimator = TokenEstimator(chars_per_token=chars_per_token)
    history = long_history(200)

    try:
        prompt = build_prompt(
            make_card(), PERSONA, history, context_length=context_length, max_tokens=256, estimator=estimator
        )
    except PromptTooLongError as error:
        assert error.required > error.budget
        return

    assert estimator.estimate_messages(prompt.messages) <= prompt.budget
    kept = len(history) - prompt.dropped["turns"]
    assert sent_history(prompt, history) == [substituted(turn) for turn in history[-kept:]]


def test_cjk_history_is_trimmed_as_the_denser_text_it_is() -> None:
    history = [
        Turn("user" if i % 2 else "assistant", f"第{i}回：宇宙船のエンジンが静かに唸っている。" * 4)
        for i in range(200)
    ]
    history[-1] = Turn("user", "ドラゴンですか、{{char}}？")

    prompt = build_prompt(
        make_card(), PERSONA, history, context_length=2048, max_tokens=256, estimator=ESTIMATOR
    )

    assert prompt.estimated_tokens <= prompt.budget
    assert prompt.messages[-2]["content"] == "ドラゴンですか、Mira？"
    assert prompt.dropped["turns"] > 150


def test_a_rebuild_within_the_context_lm_studio_reports_fits_it() -> None:
    history = long_history(200)
    first = build_prompt(
        make_card(), PERSONA, history, context_length=8192, max_tokens=256, estimator=ESTIMATOR
    )
    loaded = parse_context_overflow(
        "Trying to keep the first 7000 tokens when context the overflows. However, the model is loaded "
        "with context length of only 2048 tokens, which is not enough."
    )
    assert loaded == 2048

    retry = build_prompt(
        make_card(), PERSONA, history, context_length=loaded, max_tokens=256, estimator=ESTIMATOR.cautious()
    )

    assert ESTIMATOR.cautious().estimate_messages(retry.messages) <= 2048 - 256
    assert retry.dropped["turns"] > first.dropped["turns"]
    assert retry.messages[-2] == substituted(history[-1])
