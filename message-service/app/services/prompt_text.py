"""Text rules of character cards: name macros, `{{original}}`, and `<START>` example dialogues."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Role = Literal["user", "assistant"]

# SillyTavern replaces these case-insensitively, and so do we.
_NAME_MACRO = re.compile(r"\{\{\s*(char|user)\s*\}\}|<(bot|user)>", re.IGNORECASE)
_ORIGINAL = re.compile(r"\{\{\s*original\s*\}\}", re.IGNORECASE)
_START = re.compile(r"<start>", re.IGNORECASE)
_LABEL = r"\s*:[ \t]?"


@dataclass(frozen=True)
class Turn:
    """One message of the history (or of an example dialogue), oldest first in a list."""

    role: Role
    content: str


def substitute(text: str, *, char: str, user: str) -> str:
    """`{{char}}`/`<BOT>` become the character's name, `{{user}}`/`<USER>` the persona's."""

    def name(match: re.Match[str]) -> str:
        macro = (match.group(1) or match.group(2)).lower()
        return char if macro in ("char", "bot") else user

    return _NAME_MACRO.sub(name, text)


def replace_original(text: str, original: str) -> str:
    """A card's override with its `{{original}}` placeholder replaced by the default it overrides."""
    return _ORIGINAL.sub(lambda _: original, text)


def _speaker_pattern(macros: str, name: str) -> str:
    alternatives = [macros]
    if name:
        alternatives.append(re.escape(name))
    return "(?:" + "|".join(alternatives) + ")" + _LABEL


def _speakers(char: str, user: str) -> re.Pattern[str]:
    user_label = _speaker_pattern(r"\{\{\s*user\s*\}\}|<user>", user)
    char_label = _speaker_pattern(r"\{\{\s*char\s*\}\}|<bot>", char)
    return re.compile(f"^(?:(?P<user>{user_label})|(?P<char>{char_label}))", re.IGNORECASE)


def _block_turns(block: str, speakers: re.Pattern[str]) -> list[Turn]:
    """Lines labelled `{{user}}:`/`{{char}}:` (or the names) start turns; others continue the turn.

    Narration before the first label is the character's.
    """
    turns: list[tuple[Role, list[str]]] = []
    for line in block.splitlines():
        match = speakers.match(line)
        if match:
            role: Role = "user" if match.group("user") else "assistant"
            turns.append((role, [line[match.end() :]]))
        elif turns:
            turns[-1][1].append(line)
        elif line.strip():
            turns.append(("assistant", [line]))
    joined = (Turn(role, "\n".join(lines).strip()) for role, lines in turns)
    return [turn for turn in joined if turn.content]


def parse_examples(mes_example: str, *, char: str, user: str) -> list[list[Turn]]:
    """A card's `mes_example` as dialogue blocks (one per `<START>`), names substituted, labels removed."""
    speakers = _speakers(char, user)
    blocks = []
    for raw_block in _START.split(mes_example or ""):
        turns = [
            Turn(turn.role, substitute(turn.content, char=char, user=user))
            for turn in _block_turns(raw_block, speakers)
        ]
        if turns:
            blocks.append(turns)
    return blocks
