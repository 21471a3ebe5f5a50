"""OpenAI-compatible request bodies; unknown fields pass through to LM Studio untouched."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chat_common.validation import UnicodeModel

# Strict: a JSON `true` is not the number 1, nor "0.5" a number (the schema fuzzer found `top_p: false`
# answered as 0); unknown fields still pass through to LM Studio as they are.
_PASS_THROUGH = ConfigDict(extra="allow", strict=True)


class _Request(UnicodeModel):
    model_config = _PASS_THROUGH

    model: str | None = Field(
        default=None, max_length=256, description="Model id or alias; default if omitted"
    )
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=-1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)

    def payload(self) -> dict[str, Any]:
        body = self.model_dump(exclude_none=True)
        body.pop("stream", None)
        return body


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1)


class CompletionRequest(_Request):
    prompt: str = Field(min_length=1)


class EmbeddingRequest(UnicodeModel):
    model_config = _PASS_THROUGH

    model: str = Field(min_length=1, max_length=256)
    input: str | list[str] = Field(min_length=1)


class LoadRequest(BaseModel):
    model_config = ConfigDict(strict=True)

    context_length: int | None = Field(default=None, gt=0, le=1_048_576)
