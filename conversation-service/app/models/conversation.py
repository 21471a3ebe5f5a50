"""The conversation document: owner, character, the snapshots reading it needs, and its counters."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from beanie import Document
from pydantic import BaseModel, Field, field_validator
from pymongo import ASCENDING, DESCENDING, IndexModel

from chat_common.mongo import MongoTime

Status = Literal["active", "archived"]


class CharacterSnapshot(BaseModel):
    """What listing and prompt building read of the character, copied when the conversation starts
    (and on refresh-character), so that reading a conversation never calls character-service."""

    name: str
    avatar_url: str | None = None
    greeting: str = ""
    alternate_greetings: list[str] = Field(default_factory=list)
    updated_at: MongoTime | None = None  # the character's own, when copied

    @field_validator("updated_at")
    @classmethod
    def _milliseconds(cls, value: datetime | None) -> datetime | None:
        # Stored in milliseconds: what is returned at once must equal what is read back later.
        return value and value.replace(microsecond=value.microsecond // 1000 * 1000)


class PersonaSnapshot(BaseModel):
    """How the user appears in the chat: a persona, or (id None) the user's display name alone."""

    id: str | None = None
    name: str
    description: str = ""


class Conversation(Document):
    # Other documents and services are referenced by string ids (MONGODB.md rule 1).
    user_id: str
    character_id: str
    title: str | None = None
    status: Status = "active"
    pinned: bool = False
    character: CharacterSnapshot
    persona: PersonaSnapshot
    # Optimistic concurrency: every change is a compare-and-set on this number (MONGODB.md rule 4).
    version: int = 1
    message_count: int = 0
    last_message_at: MongoTime | None = None
    last_activity_at: MongoTime  # created_at, then the newest message: the listing's order
    created_at: MongoTime
    updated_at: MongoTime
    deleted_at: MongoTime | None = None
    # When what another service may have cached of it last changed (PATCHed, character refreshed,
    # deleted: every change of `version` after it was created), not its activity: the changes feed's key.
    changed_at: MongoTime | None = None
    # "<deleted_at in ms, 13 digits>-<id>": one sortable string for the deleted feed's cursor.
    deleted_key: str | None = None
    # Message ids already counted by the activity endpoint: a retried activity counts once.
    counted_message_ids: list[str] = Field(default_factory=list)
    # Message ids deleted at message-service (each also in `counted_message_ids`, so that a late
    # activity retry never counts it again); the count was lowered for those that had been counted.
    uncounted_message_ids: list[str] = Field(default_factory=list)
    # Whether character-service acknowledged this conversation in its counter (retried until it does).
    character_counted: bool = False

    class Settings:
        name = "conversations"
        indexes = [
            # The owner's list: filter by owner and live, sort pinned, newest activity.
            IndexModel(
                [
                    ("user_id", ASCENDING),
                    ("deleted_at", ASCENDING),
                    ("pinned", DESCENDING),
                    ("last_activity_at", DESCENDING),
                ],
                name="owner_listing",
            ),
            IndexModel([("deleted_key", ASCENDING)], name="deleted_feed"),
            IndexModel([("changed_at", ASCENDING)], name="changes_feed"),
            IndexModel([("character_counted", ASCENDING), ("created_at", ASCENDING)], name="counter_retry"),
        ]
