"""OpenAI-compatible replies, as the OpenAPI document shows them (the routes pass LM Studio's answer
through; these models describe it, extra fields included)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chat_common.openapi import event_stream
from lmstudio_client import ModelInfo


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Timing(BaseModel):
    """llm-service's own measure of the call."""

    total_ms: float
    first_token_ms: float | None = Field(default=None, description="Streamed replies only")
    tokens_per_second: float | None = None


class AssistantMessage(_Open):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    reasoning: str | None = Field(default=None, description="Thinking text, from reasoning models only")
    tool_calls: list[dict[str, Any]] | None = None


class ChatChoice(_Open):
    index: int
    message: AssistantMessage
    logprobs: Any = None
    finish_reason: str | None = Field(default=None, description="`stop`, `length` or `tool_calls`")


class ChatCompletion(_Open):
    """A whole chat reply (`stream: false`)."""

    id: str = Field(examples=["chatcmpl-3k9x2m7q1w8e5r4t6y0u"])
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(description="Unix seconds")
    model: str = Field(description="The model that really answered", examples=["lmstudio-standin/echo-7b"])
    choices: list[ChatChoice]
    usage: Usage
    timing: Timing
    system_fingerprint: str | None = None


class Delta(_Open):
    role: Literal["assistant"] | None = Field(default=None, description="In the first chunk only")
    content: str | None = None


class ChunkChoice(_Open):
    index: int
    delta: Delta
    logprobs: Any = None
    finish_reason: str | None = None


class ChatCompletionChunk(_Open):
    """One server-sent event of a streamed chat reply (`stream: true`)."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice] = Field(description="Empty in the last chunk, which carries `usage`")
    usage: Usage | None = None
    timing: Timing | None = None


class CompletionChoice(_Open):
    index: int
    text: str
    logprobs: Any = None
    finish_reason: str | None = None


class Completion(_Open):
    """A whole text completion (`stream: false`)."""

    id: str = Field(examples=["cmpl-3k9x2m7q1w8e5r4t6y0u"])
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage
    timing: Timing


class CompletionChunk(_Open):
    """One server-sent event of a streamed text completion (`stream: true`): a piece of the text."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice] = Field(description="Empty in the last chunk, which carries `usage`")
    usage: Usage | None = None
    timing: Timing | None = None


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    embedding: list[float]
    index: int


class Embeddings(_Open):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelInfo]


def streamed(chunk: type[BaseModel], first: dict[str, Any]) -> dict[str, Any]:
    """The `text/event-stream` content of a streamed reply: `data:` events of `chunk` (the `first`
    one as the example), then `[DONE]`. Its schema is one event; its data's, `chunk` (`contentSchema`)."""
    return event_stream(
        f"Server-sent events, each `data: <{chunk.__name__} as JSON>` and a blank line; the last chunk "
        "carries `usage` and `timing`; the stream ends with `data: [DONE]`. An error after streaming "
        'began arrives as a last event `data: {"error": {...}}`.',
        data=_inlined(chunk.model_json_schema()),
        done="[DONE]",
        example=f"data: {json.dumps(first, separators=(',', ':'))}\n\n...\n\ndata: [DONE]\n\n",
    )


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with its `$defs` references replaced by the definitions (a `#/$defs/...` reference
    would be read against the whole OpenAPI document)."""
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(definitions[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return dict(resolve(schema))


_COMMON = {"id": "chatcmpl-3k9x2m7q1w8e5r4t6y0u", "created": 1767225600, "model": "lmstudio-standin/echo-7b"}
CHAT_CHUNK_EXAMPLE = {
    **_COMMON,
    "object": "chat.completion.chunk",
    "choices": [{"index": 0, "delta": {"role": "assistant", "content": "You "}, "finish_reason": None}],
}
COMPLETION_CHUNK_EXAMPLE = {
    **_COMMON,
    "id": "cmpl-3k9x2m7q1w8e5r4t6y0u",
    "object": "text_completion",
    "choices": [{"index": 0, "text": "You ", "logprobs": None, "finish_reason": None}],
}
