"""What a disconnected stream is billed from: every streamed chunk that carries generated output
counts, whichever delta field carries it (LM Studio streams thinking in `reasoning_content` and tool
calls in `tool_calls`), while a chunk with only the role, an empty delta or only usage does not."""

from __future__ import annotations

from typing import Any

from app.services.llm import Progress, _dump
from lmstudio_client import ChatChunk


def _chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    """A chunk as LM Studio streams it, parsed and dumped as llm-service forwards it."""
    raw = {
        "id": "chatcmpl-abc",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "qwen3-8b",
        "system_fingerprint": "qwen3-8b",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    return _dump(ChatChunk.model_validate(raw))


TOOL_CALL = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "roll", "arguments": ""}}


def test_reasoning_and_tool_call_chunks_are_counted_like_content() -> None:
    progress = Progress()
    chunks = [
        _chunk({"role": "assistant", "reasoning_content": "Let"}),
        _chunk({"reasoning_content": " me think"}),
        _chunk({"content": "Hi"}),
        _chunk({"tool_calls": [TOOL_CALL]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"d": 6}'}}]}),
    ]
    for chunk in chunks:
        progress.count(chunk)
    assert progress.generated == 5
    assert progress.tokens == 5


def test_chunks_without_generated_output_are_not_counted() -> None:
    progress = Progress()
    for chunk in (
        _chunk({"role": "assistant"}),
        _chunk({"role": "assistant", "content": ""}),
        _chunk({}, finish_reason="stop"),
        _chunk({"content": None, "reasoning_content": "", "tool_calls": []}),
    ):
        progress.count(chunk)
    progress.count({"id": "x", "choices": [], "usage": {"completion_tokens": 7}})
    assert progress.generated == 0
    assert progress.tokens == 7  # LM Studio's own count, once reported, wins


def test_text_completion_chunks_are_counted() -> None:
    progress = Progress()
    progress.count({"choices": [{"index": 0, "text": "Once", "finish_reason": None}]})
    progress.count({"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]})
    assert progress.generated == 1
