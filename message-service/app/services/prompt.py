"""Prompt building: a card, a persona and the active history into the chat messages for the model.

Character chat conventions (Character Card V2, SillyTavern): one system message (main prompt -- the
card's `system_prompt` with `{{original}}` or the default --, lorebook entries before the character,
the character definition, lorebook entries after it, the persona), the `<START>` example dialogues
as user/assistant turns, the history, then `post_history_instructions` as a system message.
`creator_notes` are for people and never sent. Everything is fitted into the model's context length
minus the reply's `max_tokens`: old turns leave first, then example blocks, then lorebook entries,
then the last few turns; the character definition and the new message never leave.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from app.services import lorebook
from app.services.prompt_fit import SEPARATOR, Costs, Fit, Parts, fit_parts
from app.services.prompt_text import Turn, parse_examples, replace_original, substitute
from app.services.tokens import TokenEstimator
from chat_common.errors import UnprocessableError

__all__ = [
    "Card",
    "Mode",
    "Persona",
    "Prompt",
    "PromptTooLongError",
    "Section",
    "Turn",
    "build_prompt",
    "parse_context_overflow",
]

Mode = Literal["reply", "continue", "impersonate"]

DEFAULT_MAIN_PROMPT = (
    "Write {{char}}'s next reply in a fictional chat between {{char}} and {{user}}. Stay in character, "
    "write only {{char}}'s reply, and never speak or act for {{user}}."
)
DEFAULT_POST_HISTORY = ""
IMPERSONATE_PROMPT = (
    "Write {{user}}'s next message in this chat, as {{user}} would, in first person. Write only "
    "{{user}}'s message; never write for {{char}}."
)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


@dataclass(frozen=True)
class Card:
    """What prompt building needs of a character (character-service's field names)."""

    name: str
    description: str = ""
    personality: str = ""
    scenario: str = ""
    greeting: str = ""
    example_dialogues: str = ""
    system_prompt: str = ""
    post_history_instructions: str = ""
    creator_notes: str = ""
    character_book: dict[str, Any] | None = None

    @classmethod
    def from_character(cls, character: Mapping[str, Any]) -> Card:
        """From character-service's character JSON; a raw V2 card (`data`, `first_mes`...) reads too."""
        data = character.get("data")
        if not isinstance(data, Mapping):
            data = character
        book = data.get("character_book")
        return cls(
            name=_text(data.get("name")).strip(),
            description=_text(data.get("description")),
            personality=_text(data.get("personality")),
            scenario=_text(data.get("scenario")),
            greeting=_text(data.get("greeting", data.get("first_mes"))),
            example_dialogues=_text(data.get("example_dialogues", data.get("mes_example"))),
            system_prompt=_text(data.get("system_prompt")),
            post_history_instructions=_text(data.get("post_history_instructions")),
            creator_notes=_text(data.get("creator_notes")),
            character_book=book if isinstance(book, dict) else None,
        )


@dataclass(frozen=True)
class Persona:
    """The user's side: `{{user}}` is its name (the caller falls back to the display name)."""

    name: str
    description: str = ""


@dataclass(frozen=True)
class Section:
    """One line of the prompt's itemization: what a part costs and whether it was sent."""

    name: str
    tokens: int
    kept: bool
    detail: str = ""


@dataclass
class Prompt:
    messages: list[dict[str, str]]
    stop: list[str]
    sections: list[Section]
    budget: int
    estimated_tokens: int
    context_length: int
    max_tokens: int
    mode: Mode
    dropped: dict[str, Any] = field(default_factory=dict)

    def itemization(self) -> dict[str, Any]:
        """Everything `GET .../prompt` shows, as plain JSON types."""
        return {
            "mode": self.mode,
            "messages": [dict(message) for message in self.messages],
            "stop": list(self.stop),
            "sections": [asdict(section) for section in self.sections],
            "budget": self.budget,
            "context_length": self.context_length,
            "max_tokens": self.max_tokens,
            "estimated_tokens": self.estimated_tokens,
            "dropped": {
                "turns": self.dropped["turns"],
                "examples": self.dropped["examples"],
                "lore": list(self.dropped["lore"]),
            },
        }


class PromptTooLongError(UnprocessableError):
    """The character definition and the new message alone do not fit the model's context."""

    code = "prompt_too_long"

    def __init__(self, *, required: int, budget: int, context_length: int, max_tokens: int) -> None:
        super().__init__(
            f"The character definition and the new message need about {required} tokens, but the model's "
            f"context of {context_length} tokens leaves {budget} after the reply's {max_tokens}",
            details={
                "required_tokens": required,
                "budget": budget,
                "context_length": context_length,
                "max_tokens": max_tokens,
            },
        )
        self.required = required
        self.budget = budget
        self.context_length = context_length
        self.max_tokens = max_tokens


_OVERFLOW_PATTERNS = (
    re.compile(r"context\s+(?:length|window|size)\s+of\s+only\s+([\d,]+)\s*tokens?", re.IGNORECASE),
    re.compile(r"\bonly\s+([\d,]+)\s*tokens?", re.IGNORECASE),
    re.compile(r"context\s+(?:length|window|size)\s*(?:of|is|=|:)?\s*([\d,]+)", re.IGNORECASE),
)


def parse_context_overflow(error_message: str) -> int | None:
    """N from LM Studio's "... context length of only N tokens ..."; None when it is not that error."""
    for pattern in _OVERFLOW_PATTERNS:
        match = pattern.search(error_message or "")
        if match:
            digits = match.group(1).replace(",", "")
            if digits.isdigit() and int(digits) > 0:
                return int(digits)
    return None


def _character_definition(card: Card, sub: Callable[[str], str]) -> str:
    labelled = (
        ("{{char}}'s description", card.description),
        ("{{char}}'s personality", card.personality),
        ("Scenario", card.scenario),
    )
    lines = [f"{label}: {text.strip()}" for label, text in labelled if text.strip()]
    return sub("\n".join(lines))


def _persona_text(persona: Persona, sub: Callable[[str], str]) -> str:
    description = persona.description.strip()
    return sub(f"{{{{user}}}}'s persona: {description}") if description else ""


def _parts(card: Card, persona: Persona, history: Sequence[Turn], mode: Mode, est: TokenEstimator) -> Parts:
    char, user = card.name or "Character", persona.name.strip() or "User"

    def sub(text: str) -> str:
        return substitute(text, char=char, user=user)

    main = replace_original(card.system_prompt, DEFAULT_MAIN_PROMPT) if card.system_prompt.strip() else ""
    post = replace_original(card.post_history_instructions, DEFAULT_POST_HISTORY)
    turns = [Turn(turn.role, sub(turn.content)) for turn in history]
    protected = turns[-1] if mode != "impersonate" and turns else None
    selected, over = lorebook.select_entries(card.character_book, [t.content for t in turns], est.estimate)
    return Parts(
        main=sub(main or DEFAULT_MAIN_PROMPT).strip(),
        character=_character_definition(card, sub),
        persona=_persona_text(persona, sub),
        post_history=sub(post).strip() if mode != "impersonate" else "",
        instruction=sub(IMPERSONATE_PROMPT) if mode == "impersonate" else "",
        protected=protected,
        earlier=turns[:-1] if protected else turns,
        examples=parse_examples(card.example_dialogues, char=char, user=user),
        lore=[lorebook.LoreEntry(**{**asdict(e), "content": sub(e.content)}) for e in selected],
        lore_over_budget=over,
    )


def _system_message(parts: Parts, fit: Fit) -> str:
    before = [e.content for e in fit.lore if e.position == "before_char"]
    after = [e.content for e in fit.lore if e.position == "after_char"]
    texts = [parts.main, *before, parts.character, *after, parts.persona]
    return SEPARATOR.join(text for text in texts if text)


def _message(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def _messages(parts: Parts, fit: Fit, mode: Mode) -> list[dict[str, str]]:
    messages = [_message("system", _system_message(parts, fit))]
    messages += [_message(t.role, t.content) for block in parts.examples[: fit.example_blocks] for t in block]
    earlier = parts.earlier[len(parts.earlier) - fit.earlier_kept :]
    messages += [_message(turn.role, turn.content) for turn in earlier]
    protected = [_message(parts.protected.role, parts.protected.content)] if parts.protected else []
    post = [_message("system", parts.post_history)] if parts.post_history else []
    instruction = [_message("system", parts.instruction)] if parts.instruction else []
    if mode == "continue":
        return messages + post + protected
    return messages + protected + post + instruction


def _lore_section(name: str, position: str, parts: Parts, fit: Fit, costs: Costs) -> Section | None:
    candidates = sorted([*parts.lore, *parts.lore_over_budget], key=lambda e: e.insertion_order)
    triggered = [e for e in candidates if e.position == position]
    sent = [e for e in fit.lore if e.position == position]
    if not triggered:
        return None
    detail = f"sent: {', '.join(e.name for e in sent) or 'none'}"
    if left := [e.name for e in triggered if e not in sent]:
        detail += f"; dropped: {', '.join(left)}"
    return Section(name, sum(costs.part(e.content) for e in sent), bool(sent), detail)


def _counted(
    name: str, sent: Sequence[Turn], count: int, total: int, costs: Costs, what: str
) -> Section | None:
    if not total:
        return None
    return Section(name, costs.turns(sent), bool(count), f"{count} of {total} {what} sent")


def _sections(parts: Parts, fit: Fit, costs: Costs, mode: Mode) -> list[Section]:
    """The itemization: one section per part that exists; `kept` when any of it was sent."""
    earlier = parts.earlier[len(parts.earlier) - fit.earlier_kept :]
    example_turns = [turn for block in parts.examples[: fit.example_blocks] for turn in block]
    sections = [
        Section("system", costs.part(parts.main), True, "main prompt"),
        _lore_section("lore_before_char", "before_char", parts, fit, costs),
        Section("character", costs.part(parts.character), True, "description, personality, scenario"),
        _lore_section("lore_after_char", "after_char", parts, fit, costs),
        Section("persona", costs.part(parts.persona), True) if parts.persona else None,
        _counted("examples", example_turns, fit.example_blocks, len(parts.examples), costs, "example blocks"),
        _counted("history", earlier, len(earlier), len(parts.earlier), costs, "earlier turns"),
    ]
    if parts.protected:
        name = "continued_reply" if mode == "continue" else "new_message"
        sections.append(Section(name, costs.message(parts.protected.content), True))
    if parts.post_history:
        sections.append(Section("post_history_instructions", costs.message(parts.post_history), True))
    if parts.instruction:
        sections.append(Section("impersonate_instruction", costs.message(parts.instruction), True))
    return [section for section in sections if section is not None]


def build_prompt(
    card: Card,
    persona: Persona,
    history: list[Turn],
    *,
    context_length: int,
    max_tokens: int,
    estimator: TokenEstimator,
    mode: Mode = "reply",
) -> Prompt:
    """The messages to send for the active history (oldest first, the new user message last).

    "continue": the last turn is the assistant reply to extend, sent last. "impersonate": the model
    writes the next user message; the history may end anywhere. Raises PromptTooLongError when the
    parts that are never dropped exceed `context_length - max_tokens`.
    """
    if mode != "impersonate" and not history:
        raise ValueError(f"mode {mode!r} needs a history ending with the turn to answer or continue")
    budget = context_length - max_tokens
    parts = _parts(card, persona, history, mode, estimator)
    costs = Costs(estimator)
    fixed = costs.fixed(parts)
    if fixed > budget:
        raise PromptTooLongError(
            required=fixed, budget=budget, context_length=context_length, max_tokens=max_tokens
        )
    fit = fit_parts(parts, budget - fixed, costs)
    messages = _messages(parts, fit, mode)
    char, user = card.name or "Character", persona.name.strip() or "User"
    return Prompt(
        messages=messages,
        stop=[f"\n{char}:"] if mode == "impersonate" else [f"\n{user}:"],
        sections=_sections(parts, fit, costs, mode),
        budget=budget,
        estimated_tokens=estimator.estimate_messages(messages),
        context_length=context_length,
        max_tokens=max_tokens,
        mode=mode,
        dropped={
            "turns": len(parts.earlier) - fit.earlier_kept,
            "examples": len(parts.examples) - fit.example_blocks,
            "lore": fit.lore_dropped,
        },
    )
