"""The message tree and each conversation's place in it."""

from __future__ import annotations

from typing import Literal

from beanie import Document
from pydantic import BaseModel, Field
from pymongo import ASCENDING, IndexModel

from chat_common.mongo import MongoTime

Role = Literal["user", "assistant"]
# generating -> completed | stopped | failed (DESIGN.md, "a reply's life").
Status = Literal["generating", "completed", "stopped", "failed"]
# The reply's credits: what the bookkeeping still has to do at user-service.
# `refused`: user-service answered that the reservation is settled otherwise or unknown (it expired while
# user-service was away longer than its TTL, say): final, logged as an error, never retried.
CreditsState = Literal[
    "none", "reserved", "commit_pending", "committed", "release_pending", "released", "refused"
]


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Generation(BaseModel):
    """How a reply was generated, and what it cost."""

    model: str | None = None
    usage: Usage = Field(default_factory=Usage)
    latency_ms: int | None = None
    first_token_ms: int | None = None
    finish_reason: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    # The error's details as its readers were told them live (`service`: the dependency that failed),
    # so that a reader told the end from MongoDB later is told the same.
    error_details: dict[str, object] | None = None
    reserved: int = 0
    cost: int = 0  # of the last generation (a continued reply: of its continuation)
    spent: int = 0  # everything this reply was charged, continuations included
    reservation_id: str | None = None
    credits: CreditsState = "none"
    settings: dict[str, object] = Field(default_factory=dict)  # temperature, top_p, max_tokens, stop
    # A continuation: the status the reply had before it (what it returns to if the continuation is lost).
    resumed_from: Status | None = None


class Message(Document):
    conversation_id: str
    user_id: str
    character_id: str
    parent_id: str | None = None  # None: a root (the greeting and its alternates)
    role: Role
    content: str
    reasoning: str | None = None  # kept apart from the text; never sent back into the history
    status: Status = "completed"
    # Unique: the message's own id, or for a greeting "<conversation id>:greeting:<n>", so that
    # concurrent first reads create each greeting exactly once.
    unique_key: str
    generation: Generation | None = None
    # The job's lease: the replica running it renews `lease_until`; past it, the sweeper fails it.
    lease_until: MongoTime | None = None
    # Conversation activity and character counters not yet acknowledged (retried by the sweeper).
    followups_pending: bool = False
    # A reply stored with the user message it answers (a send): its follow-ups count that message
    # too. False: the parent was counted by its own send (a regenerate). None: stored before this
    # was recorded (the parent is counted as well, each message once by its own key).
    with_parent: bool | None = None
    created_at: MongoTime
    updated_at: MongoTime
    day: str  # UTC "YYYY-MM-DD" of created_at, for per-day analytics (MONGODB.md rule 8)

    class Settings:
        name = "messages"
        indexes = [
            IndexModel([("unique_key", ASCENDING)], name="unique_key", unique=True),
            IndexModel([("conversation_id", ASCENDING), ("created_at", ASCENDING)], name="by_conversation"),
            IndexModel([("status", ASCENDING), ("lease_until", ASCENDING)], name="leases"),
            IndexModel([("generation.credits", ASCENDING)], name="credits_pending"),
            IndexModel([("followups_pending", ASCENDING)], name="followups_pending"),
            IndexModel([("user_id", ASCENDING), ("day", ASCENDING)], name="user_days"),
            IndexModel([("character_id", ASCENDING), ("day", ASCENDING)], name="character_days"),
        ]


class ConversationState(Document):
    """message-service's own view of a conversation: its active leaf. `_id` is the conversation id."""

    id: str  # type: ignore[assignment]  # the conversation id, a string _id (MONGODB.md rule 13)
    user_id: str
    active_leaf_id: str | None = None
    version: int = 1
    updated_at: MongoTime

    class Settings:
        name = "conversation_states"


class Deletion(Document):
    """Messages deleted that conversation-service has not acknowledged yet (its `message_count` still
    counts them): written before the messages are deleted, removed once told, retried by the sweeper."""

    conversation_id: str
    user_id: str
    message_ids: list[str]
    created_at: MongoTime

    class Settings:
        name = "deletions"
        indexes = [IndexModel([("created_at", ASCENDING)], name="by_age")]
