"""OpenAI-compatible chat completions, text completions and embeddings (paid with a user's token)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.api.v1.streaming import ClientDisconnected, SSEResponse, unless_disconnected
from app.core.deps import Generation
from app.schemas.openai import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from app.schemas.replies import (
    CHAT_CHUNK_EXAMPLE,
    COMPLETION_CHUNK_EXAMPLE,
    ChatCompletion,
    ChatCompletionChunk,
    Completion,
    CompletionChunk,
    Embeddings,
    streamed,
)
from app.services.llm import ChunkStream
from chat_common.auth import CurrentPrincipal, Principal

router = APIRouter(tags=["generation"])

PAID_DOC: dict[int | str, dict[str, Any]] = {
    402: {"description": "Not enough credits (`details`: `balance`, `needed`); LM Studio was not called"},
    403: {"description": "A service token without the scope `llm:generate`"},
    503: {"description": "LM Studio, or user-service (credits), is unavailable"},
}


def _replies(whole: type[BaseModel], chunk: type[BaseModel], first: dict[str, Any]) -> dict[int | str, Any]:
    """The documented 200: `whole` as JSON, or with `stream: true` SSE events of `chunk`."""
    return {
        200: {
            "model": whole,
            "description": "JSON, or with `stream: true` SSE chunks ending in `data: [DONE]`",
            "content": {"text/event-stream": streamed(chunk, first)},
        },
        **PAID_DOC,
    }


async def _generate(
    kind: str,
    payload: dict[str, Any],
    stream: bool,
    principal: Principal,
    service: Generation,
    request: Request,
) -> Response:
    """The client leaving while queued, waiting for the first token or generating cancels the upstream
    request and frees its slot at once."""
    try:
        if stream:
            opening = service.open_stream(principal, kind, payload)
            return SSEResponse(await unless_disconnected(request, opening, abandon=ChunkStream.aclose))
        return JSONResponse(await unless_disconnected(request, service.generate(principal, kind, payload)))
    except ClientDisconnected:
        return Response(status_code=499)


@router.post(
    "/chat/completions",
    response_model=None,
    responses=_replies(ChatCompletion, ChatCompletionChunk, CHAT_CHUNK_EXAMPLE),
)
async def chat_completions(
    body: ChatCompletionRequest, principal: CurrentPrincipal, service: Generation, request: Request
) -> Response:
    """OpenAI chat completion; `usage` always, `timing` (first token, tokens/s) where known."""
    return await _generate("chat", body.payload(), body.stream, principal, service, request)


@router.post(
    "/completions",
    response_model=None,
    responses=_replies(Completion, CompletionChunk, COMPLETION_CHUNK_EXAMPLE),
)
async def completions(
    body: CompletionRequest, principal: CurrentPrincipal, service: Generation, request: Request
) -> Response:
    """Raw text completion (no prompt template)."""
    return await _generate("text", body.payload(), body.stream, principal, service, request)


@router.post("/embeddings", response_model=None, responses={200: {"model": Embeddings}, **PAID_DOC})
async def embeddings(
    body: EmbeddingRequest, principal: CurrentPrincipal, service: Generation
) -> dict[str, Any]:
    """OpenAI embeddings; a user pays the per-request cost."""
    return await service.embeddings(principal, body.model_dump(exclude_none=True))
