"""Prompt building: card conventions, macros, modes, and the itemization /prompt returns."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.services.prompt import (
    DEFAULT_MAIN_PROMPT,
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
MACROS = ("{{char}}", "{{user}}", "<bot>", "<user>")


def make_card(**fields: Any) -> Card:
    base: dict[str, Any] = {
        "name": "Mira",
        "description": "{{char}} is a starship captain who trusts {{user}}.",
        "personality": "Brave, dry humour.",
        "scenario": "{{char}} and {{user}} are stranded on a moon.",
        "greeting": "Welcome aboard, {{user}}.",
        "creator_notes": "CREATOR-NOTE: works best with a 13B model.",
    }
    return Card(**(base | fields))


PERSONA = Persona(name="Alex", description="{{user}} is an engineer who admires {{char}}.")


def build(card: Card | None = None, history: list[Turn] | None = None, **kwargs: Any) -> Prompt:
    options: dict[str, Any] = {"context_length": 8192, "max_tokens": 512, "estimator": ESTIMATOR} | kwargs
    turns = history or [Turn("assistant", "Welcome aboard, {{user}}."), Turn("user", "Hello {{char}}!")]
    return build_prompt(card or make_card(), PERSONA, turns, **options)


def all_text(prompt: Prompt) -> str:
    return "\n".join(message["content"] for message in prompt.messages)


def test_without_a_card_system_prompt_the_default_main_prompt_is_sent_with_names() -> None:
    system = build().messages[0]

    assert system["role"] == "system"
    assert system["content"].startswith("Write Mira's next reply in a fictional chat between Mira and Alex.")


def test_the_character_definition_and_persona_are_in_the_system_message() -> None:
    system = build().messages[0]["content"]

    assert "Mira is a starship captain who trusts Alex." in system
    assert "Brave, dry humour." in system
    assert "Mira and Alex are stranded on a moon." in system
    assert "Alex is an engineer who admires Mira." in system


def test_a_card_system_prompt_replaces_the_default() -> None:
    system = build(make_card(system_prompt="You are {{char}}. Be terse."), None).messages[0]["content"]

    assert system.startswith("You are Mira. Be terse.")
    assert "Write Mira's next reply" not in system


def test_original_in_a_card_system_prompt_is_the_default_main_prompt() -> None:
    card = make_card(system_prompt="{{original}} Always answer in rhymes, {{char}}.")

    system = build(card).messages[0]["content"]

    expected_default = DEFAULT_MAIN_PROMPT.replace("{{char}}", "Mira").replace("{{user}}", "Alex")
    assert system.startswith(f"{expected_default} Always answer in rhymes, Mira.")


def test_creator_notes_are_never_sent() -> None:
    prompt = build(make_card(example_dialogues="<START>\n{{user}}: hi\n{{char}}: hey"))

    assert "CREATOR-NOTE" not in all_text(prompt)
    assert "CREATOR-NOTE" not in json.dumps(prompt.itemization())


def test_macros_are_replaced_in_every_message_whatever_their_case() -> None:
    card = make_card(
        description="{{Char}} knows <USER> well; <bot> is {{CHAR}}.",
        post_history_instructions="Stay as {{char}}; never write for {{user}}.",
        example_dialogues="<START>\n{{user}}: Hi {{char}}\n{{char}}: Hi <USER>",
    )
    history = [Turn("assistant", "Hello <USER>, I am <BOT>."), Turn("user", "{{ user }} waves at {{char}}")]

    prompt = build(card, history)

    text = all_text(prompt).lower()
    assert not [macro for macro in MACROS if macro in text]
    assert "{{ user }}" not in text
    assert "Mira knows Alex well; Mira is Mira." in prompt.messages[0]["content"]
    assert prompt.messages[-2]["content"] == "Alex waves at Mira"


def test_the_greeting_already_in_the_history_is_not_added_again() -> None:
    prompt = build()

    assert all_text(prompt).count("Welcome aboard, Alex.") == 1


def test_post_history_instructions_come_after_the_history() -> None:
    card = make_card(post_history_instructions="{{original}}Reply in two paragraphs, {{char}}.")

    prompt = build(card)

    assert prompt.messages[-1] == {"role": "system", "content": "Reply in two paragraphs, Mira."}
    assert prompt.messages[-2] == {"role": "user", "content": "Hello Mira!"}


def test_example_dialogue_blocks_become_example_turns_before_the_history() -> None:
    card = make_card(
        example_dialogues=(
            "<START>\n{{user}}: What is our fuel?\n{{char}}: Enough for one jump.\nMaybe two.\n"
            "<START>\nAlex: Any news?\nMira: None, {{user}}."
        )
    )

    messages = build(card).messages

    assert messages[1:6] == [
        {"role": "user", "content": "What is our fuel?"},
        {"role": "assistant", "content": "Enough for one jump.\nMaybe two."},
        {"role": "user", "content": "Any news?"},
        {"role": "assistant", "content": "None, Alex."},
        {"role": "assistant", "content": "Welcome aboard, Alex."},
    ]


def test_a_reply_stops_before_the_model_speaks_for_the_user() -> None:
    assert build().stop == ["\nAlex:"]


def test_impersonate_asks_for_the_users_next_message_and_stops_at_the_character() -> None:
    card = make_card(post_history_instructions="Reply as {{char}} only.")
    history = [Turn("assistant", "Welcome aboard, {{user}}.")]

    prompt = build(card, history, mode="impersonate")

    assert prompt.stop == ["\nMira:"]
    assert prompt.messages[-1]["role"] == "system"
    assert "Alex's next message" in prompt.messages[-1]["content"]
    assert "Reply as Mira only." not in all_text(prompt)
    assert prompt.messages[-2] == {"role": "assistant", "content": "Welcome aboard, Alex."}


def test_impersonate_works_on_an_empty_history() -> None:
    prompt = build_prompt(
        make_card(), PERSONA, [], context_length=4096, max_tokens=256, estimator=ESTIMATOR, mode="impersonate"
    )

    assert [message["role"] for message in prompt.messages] == ["system", "system"]
    assert prompt.dropped == {"turns": 0, "examples": 0, "lore": []}


def test_continue_sends_the_reply_to_extend_last_after_the_instructions() -> None:
    card = make_card(post_history_instructions="Be vivid.")
    history = [
        Turn("assistant", "Welcome aboard."),
        Turn("user", "Status?"),
        Turn("assistant", "The engines are"),
    ]

    prompt = build(card, history, mode="continue")

    assert prompt.messages[-1] == {"role": "assistant", "content": "The engines are"}
    assert prompt.messages[-2] == {"role": "system", "content": "Be vivid."}
    assert prompt.stop == ["\nAlex:"]


def test_continue_never_drops_the_reply_to_extend() -> None:
    long_reply = "The engines are " + "humming " * 300
    history = [Turn("user", "old " * 400), Turn("assistant", long_reply)]

    prompt = build(make_card(), history, mode="continue", context_length=1200, max_tokens=100)

    assert prompt.messages[-1]["content"] == long_reply
    assert prompt.dropped["turns"] == 1


def test_a_card_and_message_larger_than_the_budget_raise_prompt_too_long() -> None:
    history = [Turn("user", "word " * 2000)]

    with pytest.raises(PromptTooLongError) as raised:
        build(make_card(), history, context_length=2048, max_tokens=256)

    error = raised.value
    assert error.budget == 1792
    assert error.required > 1792
    assert error.status_code == 422
    assert error.details["context_length"] == 2048
    assert "1792" in error.message


def test_a_reply_needs_a_history() -> None:
    with pytest.raises(ValueError):
        build_prompt(make_card(), PERSONA, [], context_length=4096, max_tokens=256, estimator=ESTIMATOR)


def test_the_itemization_is_json_with_sections_budget_and_what_was_dropped() -> None:
    card = make_card(
        character_book={"entries": [{"keys": ["Hello"], "content": "Lore.", "name": "greeting lore"}]},
        post_history_instructions="Be brief.",
    )

    item = json.loads(json.dumps(build(card).itemization()))

    assert item["budget"] == 8192 - 512
    assert item["estimated_tokens"] <= item["budget"]
    assert item["dropped"] == {"turns": 0, "examples": 0, "lore": []}
    sections = {section["name"]: section for section in item["sections"]}
    assert set(sections) >= {"system", "character", "persona", "lore_before_char", "history", "new_message"}
    assert sections["lore_before_char"]["detail"] == "sent: greeting lore"
    assert sections["post_history_instructions"]["tokens"] > 0
    assert item["messages"][-1]["content"] == "Be brief."


def test_section_estimates_add_up_to_no_less_than_the_whole() -> None:
    card = make_card(example_dialogues="<START>\n{{user}}: a\n{{char}}: b", post_history_instructions="x")
    prompt = build(card)

    parts = sum(section.tokens for section in prompt.sections if section.kept)
    overhead = ESTIMATOR.reply_priming + ESTIMATOR.message_overhead

    assert prompt.estimated_tokens <= parts + overhead


def test_card_from_character_service_json() -> None:
    character = {
        "id": "0b7f...",
        "name": "Mira",
        "description": "d",
        "personality": "p",
        "scenario": "s",
        "greeting": "g",
        "alternate_greetings": ["g2"],
        "example_dialogues": "<START>",
        "system_prompt": "sp",
        "post_history_instructions": "phi",
        "creator_notes": "cn",
        "character_book": {"entries": []},
        "tags": ["x"],
    }

    card = Card.from_character(character)

    assert card == Card(
        name="Mira",
        description="d",
        personality="p",
        scenario="s",
        greeting="g",
        example_dialogues="<START>",
        system_prompt="sp",
        post_history_instructions="phi",
        creator_notes="cn",
        character_book={"entries": []},
    )


def test_card_from_a_raw_v2_card_and_from_wrong_types() -> None:
    raw = {"spec": "chara_card_v2", "data": {"name": "Mira", "first_mes": "Hi", "mes_example": "<START>"}}
    odd = {"name": 5, "description": None, "character_book": "not a book"}

    assert Card.from_character(raw).greeting == "Hi"
    assert Card.from_character(raw).example_dialogues == "<START>"
    assert Card.from_character(odd) == Card(name="")


def test_a_card_without_a_name_or_a_persona_without_a_name_still_builds() -> None:
    prompt = build_prompt(
        Card(name=""),
        Persona(name=" "),
        [Turn("user", "Hi {{char}}, I am {{user}}")],
        context_length=4096,
        max_tokens=256,
        estimator=ESTIMATOR,
    )

    assert prompt.messages[-1]["content"] == "Hi Character, I am User"
    assert prompt.stop == ["\nUser:"]


def test_non_latin_names_and_texts_are_substituted_and_sent_intact() -> None:
    card = make_card(name="Мира", description="{{char}} говорит с {{user}}. 😀", scenario="宇宙船の中で。")
    persona = Persona(name="アレックス", description="{{user}}は技術者です。")
    history = [Turn("assistant", "Привет, {{user}}! 🚀"), Turn("user", "こんにちは、{{char}}。")]

    prompt = build_prompt(card, persona, history, context_length=4096, max_tokens=256, estimator=ESTIMATOR)

    system = prompt.messages[0]["content"]
    assert "Мира говорит с アレックス. 😀" in system
    assert "宇宙船の中で。" in system
    assert "アレックスは技術者です。" in system
    assert prompt.messages[-2:] == [
        {"role": "assistant", "content": "Привет, アレックス! 🚀"},
        {"role": "user", "content": "こんにちは、Мира。"},
    ]
    assert prompt.stop == ["\nアレックス:"]


LM_STUDIO_OVERFLOW = (
    "Trying to keep the first 5123 tokens when context the overflows. However, the model is loaded with "
    "context length of only 4096 tokens, which is not enough. Try to load the model with a larger "
    "context length, or provide a shorter input"
)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (LM_STUDIO_OVERFLOW, 4096),
        ("The model is loaded with context length of only 2,048 tokens.", 2048),
        ("Context Length Of Only 8192 Tokens", 8192),
        ("request exceeds context window of only 1024 token", 1024),
        ("model has only 512 tokens of context", 512),
        ("context length: 3000", 3000),
        ("The model has crashed without additional information. (Exit code: 18446744072635812000)", None),
        ("No models loaded. Please load a model", None),
        ("", None),
        ("context length of only 0 tokens", None),
    ],
)
def test_parse_context_overflow_reads_n_from_lm_studios_error(message: str, expected: int | None) -> None:
    assert parse_context_overflow(message) == expected
