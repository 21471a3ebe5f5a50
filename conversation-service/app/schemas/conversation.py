"""Request and response bodies of the conversation endpoints."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from app.models import CharacterSnapshot, Conversation, PersonaSnapshot
from app.models.conversation import Status
from chat_common.validation import InputModel

MAX_TITLE_LENGTH = 200


# Bidirectional embeddings, overrides and isolates: they reorder what follows them on screen, so a
# title could show text other than it holds. Line and paragraph separators break a one-line title.
_REORDERING = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029")
# Characters that show nothing on their own (format characters such as zero-width spaces, spaces).
_INVISIBLE = frozenset({"Cf", "Zs", "Zl", "Zp", "Cc"})


def _printable(value: str) -> str:
    if any(ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 for ch in value):
        raise ValueError("must not contain control characters")
    if any(ch in _REORDERING for ch in value):
        raise ValueError("must not contain direction overrides or line separators")
    if all(unicodedata.category(ch) in _INVISIBLE for ch in value):
        raise ValueError("must contain a visible character")
    return value


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _since_epoch(value: datetime) -> datetime:
    # Times are stored as milliseconds since the epoch; before it, some (year 0 in UTC) cannot be read back.
    if value < EPOCH:
        raise ValueError("must not be before 1970-01-01T00:00:00Z")
    return value


Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TITLE_LENGTH),
    AfterValidator(_printable),
]
MessageId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class ConversationCreate(InputModel):
    model_config = ConfigDict(extra="forbid")

    character_id: uuid.UUID = Field(examples=["0b6a5f4e-7a4e-4d55-9b0f-4d3a3f8b1c2d"])
    title: Title | None = Field(default=None, examples=["Tea on the airship"])
    persona_id: uuid.UUID | None = Field(
        default=None, description="A persona of yours; omitted: your default persona, else your display name"
    )


class ConversationUpdate(InputModel):
    """PATCH body: only the fields given change. `persona_id: null` goes back to the default persona."""

    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    archived: bool | None = None
    pinned: bool | None = None
    persona_id: uuid.UUID | None = None


class ConversationPublic(BaseModel):
    id: str
    user_id: str
    character_id: str
    title: str | None
    status: Status
    pinned: bool
    character: CharacterSnapshot
    persona: PersonaSnapshot
    version: int = Field(description="Increases with every change; send it back in If-Match")
    message_count: int
    last_message_at: datetime | None
    last_activity_at: datetime
    created_at: datetime
    updated_at: datetime


class ConversationInternal(ConversationPublic):
    """What message-service reads, deleted or not."""

    deleted: bool
    deleted_at: datetime | None


class ActivityCreate(InputModel):
    model_config = ConfigDict(extra="forbid")

    message_id: MessageId
    # With its offset: a time without one is ambiguous (it would be read in the host's zone).
    at: Annotated[AwareDatetime, AfterValidator(_since_epoch)] | None = Field(
        default=None,
        description="When the message was stored, with its offset, from 1970; default: now, never later",
    )


class ActivityResult(BaseModel):
    conversation_id: str
    message_count: int
    last_message_at: datetime | None
    counted: bool = Field(description="False when this message id had been counted already")


MAX_ACTIVITY_ITEMS = 100  # conversations in one batch
MAX_MESSAGE_IDS = 200  # message ids of one conversation in one call (counted, or deleted)


def _distinct(message_ids: list[str]) -> list[str]:
    # A message id given twice is one message: counted (or taken out) once, as by the single endpoint.
    return list(dict.fromkeys(message_ids))


MessageIds = Annotated[
    list[MessageId], Field(min_length=1, max_length=MAX_MESSAGE_IDS), AfterValidator(_distinct)
]


class ActivityItem(InputModel):
    model_config = ConfigDict(extra="forbid")

    conversation_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    message_ids: MessageIds
    at: Annotated[AwareDatetime, AfterValidator(_since_epoch)] = Field(
        description="When the newest of these messages was stored, with its offset, from 1970; never "
        "later than now"
    )


def _one_item_per_conversation(items: list[ActivityItem]) -> list[ActivityItem]:
    ids = [item.conversation_id for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError("each conversation at most once per batch (put all its message ids in one item)")
    return items


class ActivityBatch(InputModel):
    model_config = ConfigDict(extra="forbid")

    items: Annotated[
        list[ActivityItem],
        Field(min_length=1, max_length=MAX_ACTIVITY_ITEMS),
        AfterValidator(_one_item_per_conversation),
    ]


ActivityStatus = Literal["recorded", "not_found", "deleted"]


class ActivityOutcome(BaseModel):
    conversation_id: str
    status: ActivityStatus = Field(
        description="recorded (counted now or before); not_found; deleted (nothing counted, for good)"
    )
    counted_message_ids: list[str] = Field(
        description="The ids counted by this call (not those counted before: a retry counts nothing)"
    )


class ActivityBatchResult(BaseModel):
    items: list[ActivityOutcome] = Field(description="One per item, in the order given")


class DeletedMessages(InputModel):
    model_config = ConfigDict(extra="forbid")

    message_ids: MessageIds


class DeletedMessagesResult(BaseModel):
    conversation_id: str
    message_count: int
    uncounted_message_ids: list[str] = Field(
        description="The ids whose deletion lowered the count now (not those told before, nor those "
        "never counted: a retry lowers nothing)"
    )


class DeletedConversation(BaseModel):
    id: str
    user_id: str
    character_id: str
    deleted_at: datetime


class DeletedFeed(BaseModel):
    items: list[DeletedConversation]
    next_cursor: str = Field(description="Pass as `since` to read the deletions after these")


class ChangedConversations(BaseModel):
    ids: list[str] = Field(description="Conversations changed at or after `since`, in no particular order")
    until: int = Field(
        description="This service's time of the read, in ms: the next `since`, less an overlap"
    )
    complete: bool = Field(description="False: more changed than `limit`; forget every cached conversation")


def conversation_fields(conversation: Conversation) -> dict[str, Any]:
    """A stored conversation as the fields of its public shapes."""
    fields = conversation.model_dump(
        exclude={"id", "counted_message_ids", "uncounted_message_ids", "character_counted", "deleted_key"}
    )
    return {**fields, "id": str(conversation.id)}


def public(conversation: Conversation) -> ConversationPublic:
    return ConversationPublic.model_validate(conversation_fields(conversation))


def internal(conversation: Conversation) -> ConversationInternal:
    fields = conversation_fields(conversation)
    return ConversationInternal.model_validate({**fields, "deleted": conversation.deleted_at is not None})
