"""Fitting a prompt's parts into the token budget: what is kept when not everything fits.

Fill order, so the drop order is its reverse: the fixed parts (main prompt, character, persona, the
new message or the reply to continue, post-history instructions), then the newest MIN_RECENT_TURNS
earlier turns, then lorebook entries (highest priority first), then example blocks (first first),
then the remaining earlier turns newest first. Costs of parts are upper bounds of what
TokenEstimator.estimate_messages gives for the assembled messages, so the sum never exceeds the budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.services import lorebook
from app.services.prompt_text import Turn
from app.services.tokens import TokenEstimator

SEPARATOR = "\n\n"
MIN_RECENT_TURNS = 2  # the newest turns before the new message outrank examples and lore


@dataclass
class Parts:
    """The texts of one prompt, names substituted, before fitting."""

    main: str
    character: str
    persona: str
    post_history: str
    instruction: str
    protected: Turn | None  # the new message, or the reply to continue: never dropped
    earlier: list[Turn]
    examples: list[list[Turn]]
    lore: list[lorebook.LoreEntry]
    lore_over_budget: list[lorebook.LoreEntry]  # left out by the book's own token_budget


@dataclass
class Fit:
    """What was kept once the budget was applied."""

    earlier_kept: int  # the newest `earlier_kept` earlier turns are sent
    example_blocks: int  # the first `example_blocks` example blocks are sent
    lore: list[lorebook.LoreEntry]
    lore_dropped: list[str]


class Costs:
    """Token costs of the parts, each an upper bound of its share of estimate_messages."""

    def __init__(self, est: TokenEstimator) -> None:
        self.est = est

    def part(self, text: str) -> int:
        """A part of the system message, its separator included (0 when empty)."""
        return self.est.estimate(text) + self.est.estimate(SEPARATOR) if text else 0

    def message(self, text: str) -> int:
        return self.est.estimate_message(text) if text else 0

    def turns(self, turns: Sequence[Turn]) -> int:
        return sum(self.est.estimate_message(turn.content) for turn in turns)

    def fixed(self, parts: Parts) -> int:
        system = self.est.message_overhead + sum(map(self.part, (parts.main, parts.character, parts.persona)))
        protected = self.message(parts.protected.content) if parts.protected else 0
        tail = self.message(parts.post_history) + self.message(parts.instruction)
        return self.est.reply_priming + system + protected + tail


def _newest_turns_that_fit(turns: Sequence[Turn], start: int, room: int, costs: Costs) -> tuple[int, int]:
    """(how many of the newest turns fit, counting from `start` already kept, room left)."""
    kept = start
    while kept < len(turns):
        cost = costs.turns([turns[-1 - kept]])
        if cost > room:
            break
        room -= cost
        kept += 1
    return kept, room


def _fit_lore(
    entries: Sequence[lorebook.LoreEntry], room: int, costs: Costs
) -> tuple[list[lorebook.LoreEntry], list[str], int]:
    """(kept in their order, names dropped, room left): lowest priority leaves first."""
    kept = list(entries)
    total = sum(costs.part(entry.content) for entry in kept)
    dropped = []
    for entry in lorebook.drop_order(entries):
        if total <= room:
            break
        kept.remove(entry)
        dropped.append(entry.name)
        total -= costs.part(entry.content)
    return kept, dropped, room - total


def _fit_examples(blocks: Sequence[Sequence[Turn]], room: int, costs: Costs) -> tuple[int, int]:
    """(how many of the first blocks fit, room left)."""
    count = 0
    for block in blocks:
        if costs.turns(block) > room:
            break
        room -= costs.turns(block)
        count += 1
    return count, room


def fit_parts(parts: Parts, room: int, costs: Costs) -> Fit:
    """What of the droppable parts fits in `room` tokens (what the fixed parts leave)."""
    recent = parts.earlier[-MIN_RECENT_TURNS:]
    kept_recent, room = _newest_turns_that_fit(recent, 0, room, costs)
    lore, lore_dropped, room = _fit_lore(parts.lore, room, costs)
    blocks, room = _fit_examples(parts.examples, room, costs)
    earlier_kept = kept_recent
    if kept_recent == len(recent):  # turns stay contiguous: none older than one that did not fit
        earlier_kept, room = _newest_turns_that_fit(parts.earlier, kept_recent, room, costs)
    return Fit(earlier_kept, blocks, lore, [e.name for e in parts.lore_over_budget] + lore_dropped)
