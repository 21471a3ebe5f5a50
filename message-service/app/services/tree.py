"""The message tree of one conversation, in memory: paths, siblings, descendants.

Siblings (swipes) are ordered by creation. The history sent to the model is the path from a root to
the active leaf. Pure functions over the conversation's messages; no I/O.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from app.models import Message

GREETING_MARKER = ":greeting:"  # a greeting's unique key: "<conversation id>:greeting:<n>"


class Tree:
    def __init__(self, messages: Iterable[Message]) -> None:
        self.by_id: dict[str, Message] = {}
        self.children: dict[str | None, list[Message]] = defaultdict(list)
        for message in sorted(messages, key=_creation_order):
            self.by_id[str(message.id)] = message
            self.children[message.parent_id].append(message)

    def __contains__(self, message_id: str) -> bool:
        return message_id in self.by_id

    def get(self, message_id: str) -> Message | None:
        return self.by_id.get(message_id)

    @property
    def roots(self) -> list[Message]:
        return self.children[None]

    def siblings(self, message: Message) -> list[Message]:
        """The message and its alternatives (same parent), oldest first."""
        return self.children[message.parent_id]

    def sibling_position(self, message: Message) -> tuple[int, int]:
        """(index among its siblings, how many there are)."""
        siblings = self.siblings(message)
        ids = [str(m.id) for m in siblings]
        return ids.index(str(message.id)), len(ids)

    def path_to(self, message_id: str) -> list[Message]:
        """Root -> the message, inclusive."""
        path: list[Message] = []
        current = self.by_id.get(message_id)
        while current is not None:
            path.append(current)
            current = self.by_id.get(current.parent_id) if current.parent_id else None
        path.reverse()
        return path

    def newest_leaf_below(self, message: Message) -> Message:
        """Following the newest child at each step: where a branch's conversation stands."""
        current = message
        while self.children.get(str(current.id)):
            current = self.children[str(current.id)][-1]
        return current

    def descendants(self, message: Message) -> list[Message]:
        """Everything below the message (not itself)."""
        found: list[Message] = []
        pending = list(self.children.get(str(message.id), []))
        while pending:
            child = pending.pop()
            found.append(child)
            pending.extend(self.children.get(str(child.id), []))
        return found

    def active_leaf(self, leaf_id: str | None) -> Message | None:
        """The stored active leaf, or (when it is unknown or gone) the newest branch of the first root."""
        if leaf_id and leaf_id in self.by_id:
            return self.by_id[leaf_id]
        return self.newest_leaf_below(self.roots[0]) if self.roots else None


def _creation_order(message: Message) -> tuple[int, datetime, str]:
    """Oldest first; the greetings (the roots) in the card's order, whichever concurrent first read
    stored each of them and whatever its clock said."""
    _, marker, number = message.unique_key.rpartition(GREETING_MARKER)
    greeting = int(number) if message.parent_id is None and marker and number.isdigit() else 0
    return (greeting, message.created_at, str(message.id))
