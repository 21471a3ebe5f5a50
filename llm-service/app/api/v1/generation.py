"""OpenAI-compatible chat completions, text completions and embeddings."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from app.api.v1.streaming import ClientDisconnected, SSEResponse, unless_disconnected
from app.core.deps import LLM
from app.schemas.openai import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from chat_common.auth import CurrentPrincipal

router = APIRouter(tags=["generation"])

STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "JSON, or with `stream: true` SSE chunks ending in `data: [DONE]`",
        "content": {"text/event-stream": {}},
    }
}


async def _generate(kind: str, payload: dict[str, Any], stream: bool, llm: LLM, request: Request) -> Response:
    if stream:
        return SSEResponse(await llm.open_stream(kind, payload))
    try:
        return JSONResponse(await unless_disconnected(request, llm.generate(kind, payload)))
    except ClientDisconnected:
        return Response(status_code=499)


@router.post("/chat/completions", responses=STREAM_DOC)
async def chat_completions(
    body: ChatCompletionRequest, _: CurrentPrincipal, llm: LLM, request: Request
) -> Response:
    """OpenAI chat completion; `usage` always, `timing` (first token, tokens/s) where known."""
    return await _generate("chat", body.payload(), body.stream, llm, request)


@router.post("/completions", responses=STREAM_DOC)
async def completions(body: CompletionRequest, _: CurrentPrincipal, llm: LLM, request: Request) -> Response:
    """Raw text completion (no prompt template)."""
    return await _generate("text", body.payload(), body.stream, llm, request)


@router.post("/embeddings")
async def embeddings(body: EmbeddingRequest, _: CurrentPrincipal, llm: LLM) -> dict[str, Any]:
    return await llm.embeddings(body.model_dump(exclude_none=True))
