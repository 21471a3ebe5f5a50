"""Request and response bodies of message-service."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from app.models import Message
from app.models.message import Role, Status
from app.services.tree import Tree
from chat_common.validation import InputModel

Stop = Annotated[str, StringConstraints(min_length=1, max_length=100)]


def _has_text(value: str) -> str:
    if not value.strip():
        raise ValueError("must contain text, not only whitespace")
    return value


# A message's text: at least one visible character (its length is checked against MAX_MESSAGE_CHARS).
Text = Annotated[
    str, Field(min_length=1, description="At most MAX_MESSAGE_CHARS characters"), AfterValidator(_has_text)
]


class GenerationOptions(InputModel):
    """Model and sampling for one reply, within the configured limits."""

    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, description="At most MAX_TOKENS_LIMIT")
    stop: list[Stop] | None = Field(default=None, max_length=8)
    stream: bool = False


class MessageCreate(GenerationOptions):
    content: Text
    parent_id: str | None = Field(default=None, description="Default: the active leaf")


class MessageEdit(GenerationOptions):
    content: Text
    regenerate: bool = False


class UsagePublic(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class GenerationPublic(BaseModel):
    model: str | None
    usage: UsagePublic
    latency_ms: int | None
    first_token_ms: int | None
    finish_reason: str | None
    cost: int
    error_code: str | None
    error_message: str | None


class MessagePublic(BaseModel):
    id: str
    conversation_id: str
    parent_id: str | None
    role: Role
    content: str
    reasoning: str | None
    status: Status
    sibling_index: int
    sibling_count: int
    generation: GenerationPublic | None
    created_at: datetime
    updated_at: datetime


class MessagePage(BaseModel):
    items: list[MessagePublic]
    has_more_before: bool
    has_more_after: bool


class Exchange(BaseModel):
    """A send's result: the stored user message and the reply."""

    user_message: MessagePublic | None
    reply: MessagePublic


class Branch(BaseModel):
    """An edit's result: the new user message, and its reply when one was asked for."""

    user_message: MessagePublic
    reply: MessagePublic | None


class Suggestion(BaseModel):
    content: str
    cost: int


def public(
    message: Message, tree: Tree | None = None, *, siblings: tuple[int, int] | None = None
) -> MessagePublic:
    index, count = siblings or (tree.sibling_position(message) if tree else (0, 1))
    generation: dict[str, Any] | None = None
    if message.generation is not None:
        generation = message.generation.model_dump()
    return MessagePublic(
        id=str(message.id),
        conversation_id=message.conversation_id,
        parent_id=message.parent_id,
        role=message.role,
        content=message.content,
        reasoning=message.reasoning,
        status=message.status,
        sibling_index=index,
        sibling_count=count,
        generation=GenerationPublic.model_validate(generation) if generation else None,
        created_at=message.created_at,
        updated_at=message.updated_at,
    )
