"""Lorebook entry selection per Character Card V2, lenient with cards from the wild."""

from __future__ import annotations

from typing import Any

from app.services.lorebook import parse_book, select_entries
from app.services.tokens import TokenEstimator

ESTIMATE = TokenEstimator(chars_per_token=4.0).estimate


def entry(name: str, keys: list[str], **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": name,
        "keys": keys,
        "content": f"Lore about {name}.",
        "enabled": True,
        "insertion_order": 100,
    }
    return base | fields


def book(*entries: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"entries": list(entries), **fields}


def names(character_book: Any, messages: list[str]) -> list[str]:
    selected, _ = select_entries(character_book, messages, ESTIMATE)
    return [e.name for e in selected]


def test_an_entry_appears_only_when_one_of_its_keys_does() -> None:
    lore = book(entry("dragon", ["dragon", "wyrm"]), entry("castle", ["castle"]))

    assert names(lore, ["A wyrm flies over us."]) == ["dragon"]
    assert names(lore, ["Nothing happens."]) == []


def test_only_the_last_scan_depth_messages_are_scanned() -> None:
    lore = book(entry("dragon", ["dragon"]), scan_depth=2)

    assert names(lore, ["the dragon", "hello", "hi"]) == []
    assert names(lore, ["hello", "the dragon", "hi"]) == ["dragon"]


def test_the_default_scan_depth_is_two_messages() -> None:
    lore = book(entry("dragon", ["dragon"]))

    assert names(lore, ["the dragon", "a", "b"]) == []
    assert names(lore, ["the dragon", "b"]) == ["dragon"]


def test_constant_entries_are_always_in() -> None:
    lore = book(entry("world", [], constant=True), entry("dragon", ["dragon"]))

    assert names(lore, ["nothing here"]) == ["world"]


def test_disabled_entries_never_appear() -> None:
    lore = book(entry("dragon", ["dragon"], enabled=False), entry("world", [], constant=True, enabled=False))

    assert names(lore, ["dragon"]) == []


def test_a_selective_entry_needs_a_secondary_key_too() -> None:
    lore = book(entry("red dragon", ["dragon"], selective=True, secondary_keys=["red", "crimson"]))

    assert names(lore, ["a dragon"]) == []
    assert names(lore, ["a crimson dragon"]) == ["red dragon"]


def test_secondary_keys_are_ignored_when_the_entry_is_not_selective() -> None:
    lore = book(entry("dragon", ["dragon"], selective=False, secondary_keys=["red"]))

    assert names(lore, ["a dragon"]) == ["dragon"]


def test_a_selective_entry_without_secondary_keys_needs_only_its_keys() -> None:
    lore = book(entry("dragon", ["dragon"], selective=True, secondary_keys=[]))

    assert names(lore, ["a dragon"]) == ["dragon"]


def test_keys_match_case_insensitively_by_default() -> None:
    lore = book(entry("dragon", ["Dragon"]))

    assert names(lore, ["DRAGON!"]) == ["dragon"]


def test_a_case_sensitive_entry_needs_the_exact_case() -> None:
    lore = book(entry("Ash", ["Ash"], case_sensitive=True))

    assert names(lore, ["the ash falls"]) == []
    assert names(lore, ["Ash arrives"]) == ["Ash"]


def test_entries_come_in_insertion_order() -> None:
    lore = book(
        entry("third", ["x"], insertion_order=30),
        entry("first", ["x"], insertion_order=10),
        entry("second", ["x"], insertion_order=20),
    )

    assert names(lore, ["x"]) == ["first", "second", "third"]


def test_position_is_read_from_the_card_or_sillytaverns_extension() -> None:
    lore = book(
        entry("a", ["x"], position="after_char"),
        entry("b", ["x"], extensions={"position": 1}),
        entry("c", ["x"]),
        entry("d", ["x"], position="somewhere"),
    )

    positions = {e.name: e.position for e in parse_book(lore).entries}

    assert positions == {"a": "after_char", "b": "after_char", "c": "before_char", "d": "before_char"}


def test_the_books_token_budget_drops_the_lowest_priority_first() -> None:
    long = "word " * 40  # 50 tokens at 4 characters a token
    lore = book(
        entry("important", ["x"], content=long, priority=10, insertion_order=1),
        entry("minor", ["x"], content=long, priority=1, insertion_order=2),
        entry("middle", ["x"], content=long, priority=5, insertion_order=3),
        token_budget=120,
    )

    selected, dropped = select_entries(lore, ["x"], ESTIMATE)

    assert [e.name for e in selected] == ["important", "middle"]
    assert [e.name for e in dropped] == ["minor"]


def test_entries_are_named_by_name_then_comment_then_id() -> None:
    lore = book(
        {"keys": ["x"], "content": "c1", "comment": "from comment"},
        {"keys": ["x"], "content": "c2", "id": 7},
        {"keys": ["x"], "content": "c3"},
    )

    assert names(lore, ["x"]) == ["from comment", "entry 7", "entry #2"]


def test_malformed_books_give_no_entries() -> None:
    for bad in (None, "a book", 42, [], {"entries": "none"}, {"entries": None}, {}):
        assert names(bad, ["anything"]) == []


def test_malformed_entries_are_skipped_and_the_good_ones_kept() -> None:
    lore = book(
        "not an entry",  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        {"keys": ["x"]},
        {"keys": ["x"], "content": 12},
        {"keys": "x", "content": "keys given as a string"},
        {"keys": [1, None, "x"], "content": "odd keys", "insertion_order": "5"},
        {"keys": None, "content": "no keys, not constant"},
        {"keys": ["x"], "content": "odd flags", "enabled": "true", "selective": "yes", "secondary_keys": 3},
        {"keys": ["x"], "content": "disabled as text", "enabled": "false"},
        {"keys": ["x"], "content": "odd order", "insertion_order": [1], "priority": {}, "enabled": None},
        scan_depth="three",
        token_budget="lots",
    )

    selected, _ = select_entries(lore, ["x"], ESTIMATE)

    assert [e.content for e in selected] == [
        "odd keys",
        "keys given as a string",
        "odd flags",
        "odd order",
    ]


def test_sillytavern_world_entries_keyed_by_uid_are_read() -> None:
    lore = {"entries": {"0": entry("dragon", ["dragon"]), "1": entry("castle", ["castle"])}}

    assert names(lore, ["the castle"]) == ["castle"]


def test_non_latin_keys_match() -> None:
    lore = book(entry("дракон", ["дракон"]), entry("龍", ["龍"]), entry("cat", ["🐱"]))

    assert names(lore, ["Смотри, ДРАКОН и 龍 и 🐱"]) == ["дракон", "龍", "cat"]
