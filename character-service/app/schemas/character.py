"""Character schemas: CharacterBase / CharacterCreate / CharacterUpdate / CharacterPublic."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from chat_common.validation import InputModel

Visibility = Literal["private", "unlisted", "public"]
LongText = Annotated[str, Field(max_length=100_000)]
MAX_TAGS, MAX_TAG_LENGTH = 50, 64
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TAG_LENGTH)]
# Stripped first, so a name of only whitespace is empty, and so refused.
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


def _check_url(value: str | None) -> str | None:
    if value and not value.startswith(("https://", "http://", "/")):
        raise ValueError("avatar_url must be an http(s) URL or a path")
    return value


class CharacterBase(InputModel):
    """Every editable field; each maps one to one onto a Character Card V2 field."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(examples=["Captain Mira"])
    description: LongText = ""
    personality: LongText = ""
    scenario: LongText = ""
    greeting: LongText = Field(default="", description="First message (card: first_mes)")
    alternate_greetings: list[LongText] = Field(default_factory=list, max_length=100)
    example_dialogues: LongText = Field(default="", description="Card: mes_example")
    system_prompt: LongText = ""
    post_history_instructions: LongText = ""
    creator_notes: LongText = Field(default="", description="For people; never sent to a model")
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)
    creator: str = Field(default="", max_length=200)
    character_version: str = Field(default="", max_length=64)
    avatar_url: str | None = Field(default=None, max_length=2048)
    visibility: Visibility = "private"
    metadata: dict[str, Any] = Field(default_factory=dict)
    extensions: dict[str, Any] = Field(default_factory=dict)
    character_book: dict[str, Any] | None = None

    _url = field_validator("avatar_url")(_check_url)


class CharacterCreate(CharacterBase):
    """POST and PUT bodies: omitted fields take their defaults."""


class CharacterUpdate(InputModel):
    """PATCH body: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: LongText | None = None
    personality: LongText | None = None
    scenario: LongText | None = None
    greeting: LongText | None = None
    alternate_greetings: list[LongText] | None = Field(default=None, max_length=100)
    example_dialogues: LongText | None = None
    system_prompt: LongText | None = None
    post_history_instructions: LongText | None = None
    creator_notes: LongText | None = None
    tags: list[Tag] | None = Field(default=None, max_length=MAX_TAGS)
    creator: str | None = Field(default=None, max_length=200)
    character_version: str | None = Field(default=None, max_length=64)
    avatar_url: str | None = Field(default=None, max_length=2048)
    visibility: Visibility | None = None
    metadata: dict[str, Any] | None = None
    extensions: dict[str, Any] | None = None
    character_book: dict[str, Any] | None = None

    _url = field_validator("avatar_url")(_check_url)


class CharacterPublic(CharacterBase):
    model_config = ConfigDict(from_attributes=True, extra="ignore")

    # The ORM attribute is `meta` (`metadata` belongs to SQLAlchemy); the API field is `metadata`.
    metadata: dict[str, Any] = Field(default_factory=dict, validation_alias=AliasChoices("meta", "metadata"))
    name: str  # as stored: a name saved before names were stripped still reads
    id: uuid.UUID
    owner_id: uuid.UUID
    version: int
    conversation_count: int
    message_count: int
    created_at: datetime
    updated_at: datetime


class CharacterSummary(BaseModel):
    """A catalogue entry: enough to choose, without the long texts."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    description: str
    tags: list[str]
    creator: str
    avatar_url: str | None
    visibility: Visibility
    conversation_count: int
    message_count: int
    created_at: datetime
    updated_at: datetime


def _no_control_characters(value: str | None) -> str | None:
    if value is not None and any(unicodedata.category(ch) == "Cc" for ch in value):
        raise ValueError("idempotency_key must not contain control characters")
    return value


IdempotencyKey = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class CounterChange(BaseModel):
    conversations: int = Field(default=0, ge=-1000, le=1000)
    messages: int = Field(default=0, ge=-1000, le=1000)
    idempotency_key: IdempotencyKey | None = Field(
        default=None,
        description="When given, the change is applied at most once per character and key: a retry "
        "returns the current counters; the key with other amounts is a 409 (idempotency_key_in_use)",
        examples=["message:6750e3f2a1b2c3d4e5f60718:created"],
    )

    _key = field_validator("idempotency_key")(_no_control_characters)


class Counters(BaseModel):
    id: uuid.UUID
    conversation_count: int
    message_count: int


MAX_COUNTER_CHANGES = 200


class KeyedCounterChange(CounterChange):
    """One change of a batch: its character, and an idempotency key (required: a batch is retried)."""

    character_id: uuid.UUID
    idempotency_key: IdempotencyKey = Field(
        description="Applied at most once per character and key, as on the single route",
        examples=["exchange:6750e3f2a1b2c3d4e5f60718"],
    )


class CounterChanges(BaseModel):
    changes: list[KeyedCounterChange] = Field(min_length=1, max_length=MAX_COUNTER_CHANGES)


CounterChangeStatus = Literal["applied", "repeated", "conflict", "not_found"]


class CounterChangeResult(BaseModel):
    character_id: uuid.UUID
    idempotency_key: str
    status: CounterChangeStatus = Field(
        description="applied now; repeated (applied before, not again); conflict (the key was used with "
        "other amounts: not applied, what the single route answers with 409 idempotency_key_in_use); "
        "not_found (the character is unknown or deleted)"
    )
    conversation_count: int | None = Field(description="The character's counters after the batch")
    message_count: int | None


class CounterChangeResults(BaseModel):
    items: list[CounterChangeResult] = Field(description="One per change, in the order given")


class TagCount(BaseModel):
    tag: str
    count: int


SortOrder = Literal["relevance", "newest", "popular", "name"]
