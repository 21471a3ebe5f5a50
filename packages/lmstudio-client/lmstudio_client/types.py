"""Typed shapes of LM Studio's replies (extra fields are kept, since LM Studio adds its own)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ModelInfo(_Open):
    """A model from `/v1/models`, enriched from `/api/v0/models` when the server has it."""

    id: str
    object: str = "model"
    owned_by: str = "organization_owner"
    type: str | None = None  # llm | vlm | embeddings
    state: str | None = None  # loaded | not-loaded
    max_context_length: int | None = None
    loaded_context_length: int | None = None
    quantization: str | None = None
    arch: str | None = None
    publisher: str | None = None
    compatibility_type: str | None = None

    @property
    def is_loaded(self) -> bool:
        return self.state in (None, "loaded")

    @property
    def is_llm(self) -> bool:
        return self.type in (None, "llm", "vlm")


class Usage(_Open):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class Message(_Open):
    role: str
    content: str | None = None


class ChatChoice(_Open):
    index: int = 0
    message: Message
    finish_reason: str | None = None


class ChatCompletion(_Open):
    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None

    @property
    def text(self) -> str:
        return self.choices[0].message.content or "" if self.choices else ""


class Delta(_Open):
    role: str | None = None
    content: str | None = None


class ChunkChoice(_Open):
    index: int = 0
    delta: Delta = Field(default_factory=Delta)
    finish_reason: str | None = None


class ChatChunk(_Open):
    id: str
    object: str = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice] = Field(default_factory=list)
    usage: Usage | None = None

    @property
    def text(self) -> str:
        return "".join(c.delta.content or "" for c in self.choices)


class CompletionChoice(_Open):
    index: int = 0
    text: str
    finish_reason: str | None = None


class Completion(_Open):
    id: str
    object: str = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class Embedding(_Open):
    object: str = "embedding"
    embedding: list[float]
    index: int


class Embeddings(_Open):
    object: str = "list"
    data: list[Embedding]
    model: str
    usage: Usage | None = None


class LoadResult(_Open):
    instance_id: str
    status: str
    load_time_seconds: float | None = None


class Health(BaseModel):
    status: Literal["ok", "down", "not_lmstudio"]
    base_url: str
    detail: str = ""
    models: list[str] = Field(default_factory=list)


JSON = dict[str, Any]
