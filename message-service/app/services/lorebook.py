"""Lorebook entry selection, per the Character Card V2 `character_book`.

What is honoured:
- entries[]: `enabled` (default true), `constant` (always in), `keys` (any one appearing in the
  scanned text triggers the entry), `selective` + `secondary_keys` (then one secondary key must
  appear too; a selective entry without secondary keys needs only its keys), `case_sensitive`
  (default false), `insertion_order` (lower first), `priority` (lower dropped first when over a
  budget), `position` ("before_char"/"after_char"; SillyTavern's `extensions.position` 0/1 is read
  too; default before_char), `content`, and `name`/`comment`/`id` for naming the entry.
- book: `scan_depth` (how many of the newest messages are scanned; default 2, as SillyTavern) and
  `token_budget` (entries past it are left out, lowest priority first).

What is ignored: `recursive_scanning` (entry contents are never scanned for other keys),
`use_regex` (keys are plain substrings), and SillyTavern's extension-only logic (selective AND/NOT
variants, per-entry scan depth, probability, groups, depth-based placement).

Cards come from the wild: an entry of the wrong shape is skipped, a field of the wrong type takes
its default, and nothing here raises on bad data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Position = Literal["before_char", "after_char"]
DEFAULT_SCAN_DEPTH = 2


@dataclass(frozen=True)
class LoreEntry:
    name: str
    content: str
    keys: tuple[str, ...]
    secondary_keys: tuple[str, ...]
    selective: bool
    constant: bool
    case_sensitive: bool
    insertion_order: int
    priority: int
    position: Position

    def is_triggered_by(self, text: str) -> bool:
        """Whether the entry goes in, given the scanned text (constant entries always do)."""
        if self.constant:
            return True
        if not _any_key_in(self.keys, text, self.case_sensitive):
            return False
        if self.selective and self.secondary_keys:
            return _any_key_in(self.secondary_keys, text, self.case_sensitive)
        return True


@dataclass(frozen=True)
class LoreBook:
    entries: tuple[LoreEntry, ...]
    scan_depth: int = DEFAULT_SCAN_DEPTH
    token_budget: int | None = None


def _any_key_in(keys: Sequence[str], text: str, case_sensitive: bool) -> bool:
    if case_sensitive:
        return any(key in text for key in keys)
    lowered = text.casefold()
    return any(key.casefold() in lowered for key in keys)


def _flag(value: Any, default: bool) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    return default


def _int(value: Any, default: int) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return default
    return default


def _keys(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple):
        return ()
    return tuple(k.strip() for k in value if isinstance(k, str) and k.strip())


def _position(entry: dict[str, Any]) -> Position:
    position = entry.get("position")
    if position in ("before_char", "after_char"):
        return position  # type: ignore[no-any-return]
    extensions = entry.get("extensions")
    if isinstance(extensions, dict) and _int(extensions.get("position"), 0) == 1:
        return "after_char"
    return "before_char"


def _name(entry: dict[str, Any], index: int) -> str:
    for field in ("name", "comment"):
        value = entry.get(field)
        if isinstance(value, str) and value.strip():
            return value.strip()
    entry_id = entry.get("id")
    if isinstance(entry_id, str | int) and not isinstance(entry_id, bool):
        return f"entry {entry_id}"
    return f"entry #{index}"


def parse_entry(raw: Any, index: int) -> LoreEntry | None:
    """One entry from a card, or None when it cannot take part (disabled, no content, no keys)."""
    if not isinstance(raw, dict) or not _flag(raw.get("enabled"), True):
        return None
    content = raw.get("content")
    if not isinstance(content, str) or not content.strip():
        return None
    keys = _keys(raw.get("keys"))
    constant = _flag(raw.get("constant"), False)
    if not keys and not constant:
        return None
    return LoreEntry(
        name=_name(raw, index),
        content=content.strip(),
        keys=keys,
        secondary_keys=_keys(raw.get("secondary_keys")),
        selective=_flag(raw.get("selective"), False),
        constant=constant,
        case_sensitive=_flag(raw.get("case_sensitive"), False),
        insertion_order=_int(raw.get("insertion_order"), 100),
        priority=_int(raw.get("priority"), 0),
        position=_position(raw),
    )


def parse_book(raw: Any) -> LoreBook:
    """The usable part of a `character_book`; an empty book for anything unusable."""
    if not isinstance(raw, dict):
        return LoreBook(entries=())
    raw_entries = raw.get("entries")
    if isinstance(raw_entries, dict):  # SillyTavern world files key entries by uid
        raw_entries = list(raw_entries.values())
    if not isinstance(raw_entries, list):
        raw_entries = []
    parsed = (parse_entry(entry, index) for index, entry in enumerate(raw_entries))
    scan_depth = _int(raw.get("scan_depth"), DEFAULT_SCAN_DEPTH)
    budget = _int(raw.get("token_budget"), 0)
    return LoreBook(
        entries=tuple(entry for entry in parsed if entry is not None),
        scan_depth=scan_depth if scan_depth >= 0 else DEFAULT_SCAN_DEPTH,
        token_budget=budget if budget > 0 else None,
    )


def triggered_entries(book: LoreBook, messages: Sequence[str]) -> list[LoreEntry]:
    """Entries whose keys appear in the last `scan_depth` messages, plus constant ones, in order."""
    scanned = messages[-book.scan_depth :] if book.scan_depth > 0 else []
    text = "\n".join(scanned)
    hits = [entry for entry in book.entries if entry.is_triggered_by(text)]
    return sorted(hits, key=lambda entry: entry.insertion_order)


def drop_order(entries: Sequence[LoreEntry]) -> list[LoreEntry]:
    """The order in which entries leave when a budget is short: lowest priority, then latest first."""
    return sorted(entries, key=lambda entry: (entry.priority, -entry.insertion_order))


def fit_token_budget(
    entries: Sequence[LoreEntry], budget: int | None, estimate: Callable[[str], int]
) -> tuple[list[LoreEntry], list[LoreEntry]]:
    """(kept, dropped): the entries that fit the book's own token budget, kept in their order."""
    if budget is None:
        return list(entries), []
    total = sum(estimate(entry.content) for entry in entries)
    dropped: list[LoreEntry] = []
    for entry in drop_order(entries):
        if total <= budget:
            break
        dropped.append(entry)
        total -= estimate(entry.content)
    gone = {id(entry) for entry in dropped}
    return [entry for entry in entries if id(entry) not in gone], dropped


def select_entries(
    character_book: Any, messages: Sequence[str], estimate: Callable[[str], int]
) -> tuple[list[LoreEntry], list[LoreEntry]]:
    """(selected, over_budget) for a raw `character_book` and the history's texts, oldest first."""
    book = parse_book(character_book)
    return fit_token_budget(triggered_entries(book, messages), book.token_budget, estimate)
