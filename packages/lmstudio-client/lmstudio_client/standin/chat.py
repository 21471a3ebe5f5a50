"""Generation endpoints: chat and text completions (whole or streamed as SSE), and embeddings."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from lmstudio_client.standin import behaviour as b
from lmstudio_client.standin.http import error, json_body, sse, standin_of
from lmstudio_client.standin.state import Standin


def _prompt(body: dict[str, Any], kind: str) -> tuple[int, str] | JSONResponse:
    """(prompt tokens, reply) for a chat or text request, or LM Studio's error for a malformed one."""
    if kind == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return error(b.bad_request("'messages' field is required and must be a non-empty array"))
        last_user = next((m for m in reversed(messages) if m.get("role") == "user"), messages[-1])
        return b.prompt_tokens(messages), b.reply_for(b.message_text(last_user.get("content")))
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        return error(b.bad_request("'prompt' field is required and must be a string"))
    return b.count_tokens(prompt), b.reply_for(prompt)


async def _generate(request: Request, kind: str) -> Response:
    standin = standin_of(request)
    body = await json_body(request)
    if isinstance(body, JSONResponse):
        return body
    resolved = standin.resolve_llm(body.get("model"))
    if isinstance(resolved, tuple):
        return error(resolved)
    prompt = _prompt(body, kind)
    if isinstance(prompt, JSONResponse):
        return prompt
    used, reply = prompt
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_object":
        return error(b.bad_request("'response_format.type' must be 'json_schema' or 'text'"))
    if used > standin.loaded_context(resolved):
        return error(b.context_overflow(used, standin.loaded_context(resolved)))
    if standin.config.failure == "crash":
        return error(b.crashed())
    if standin.config.failure == "garbage" and not body.get("stream"):
        return Response(b.GARBAGE_PAGE, status_code=200, media_type="text/html")
    pieces = b.tokens(reply)
    max_tokens = body.get("max_tokens")
    finish = "stop"
    if isinstance(max_tokens, int) and 0 < max_tokens < len(pieces):
        pieces, finish = pieces[:max_tokens], "length"
    usage = {"prompt_tokens": used, "completion_tokens": len(pieces), "total_tokens": used + len(pieces)}
    common = {
        "id": b.completion_id("chatcmpl-" if kind == "chat" else "cmpl-"),
        "created": int(time.time()),
        "model": resolved.id,
    }
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            _stream(standin, kind, pieces, finish, common, usage if include_usage else None),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )
    return await _whole(request, standin, kind, pieces, finish, common, usage)


async def _whole(
    request: Request,
    standin: Standin,
    kind: str,
    pieces: list[str],
    finish: str,
    common: dict[str, Any],
    usage: dict[str, int],
) -> Response:
    standin.begin()
    generating = asyncio.ensure_future(_pause_for(standin, len(pieces)))
    leaving = asyncio.ensure_future(_until_disconnected(request))
    try:
        await asyncio.wait({generating, leaving}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        generating.cancel()
        leaving.cancel()
        standin.end(cancelled=not generating.done() or generating.cancelled())
    if leaving.done() and not leaving.cancelled():
        return Response(status_code=499)  # the client left: LM Studio stops generating
    text = "".join(pieces)
    if kind == "chat":
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": finish,
        }
        return JSONResponse(
            {
                **common,
                "object": "chat.completion",
                "choices": [choice],
                "usage": usage,
                "stats": {},
                "system_fingerprint": common["model"],
            }
        )
    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
    return JSONResponse({**common, "object": "text_completion", "choices": [choice], "usage": usage})


async def _pause_for(standin: Standin, count: int) -> None:
    for index in range(count):
        await standin.token_pause(index)


async def _until_disconnected(request: Request) -> None:
    """Returns once the client has gone (its body was read already), even during the first-token delay."""
    message = await request.receive()
    while message["type"] != "http.disconnect":
        message = await request.receive()


async def _stream(
    standin: Standin,
    kind: str,
    pieces: list[str],
    finish: str,
    common: dict[str, Any],
    usage: dict[str, int] | None,
) -> AsyncIterator[bytes]:
    standin.begin()
    finished = False
    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
    extra = {"system_fingerprint": common["model"]} if kind == "chat" else {}
    try:
        for index, piece in enumerate(pieces):
            await standin.token_pause(index)
            await standin.stall_if_asked(index)
            if standin.config.failure == "disconnect" and index >= standin.config.disconnect_after:
                raise ConnectionAbortedError("stand-in drops the connection mid-stream (failure mode)")
            if standin.config.failure == "garbage" and index >= standin.config.garbage_after:
                yield b.GARBAGE_CHUNK
                return
            if kind == "chat":
                delta = {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
                choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
            else:
                choice = {"index": 0, "text": piece, "logprobs": None, "finish_reason": None}
            yield sse({**common, "object": obj, **extra, "choices": [choice]})
        last: dict[str, Any] = (
            {"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}
            if kind == "chat"
            else {"index": 0, "text": "", "logprobs": None, "finish_reason": finish}
        )
        yield sse({**common, "object": obj, **extra, "choices": [last]})
        if usage is not None:
            yield sse({**common, "object": obj, **extra, "choices": [], "usage": usage})
        yield sse("[DONE]")
        finished = True
    finally:
        standin.end(cancelled=not finished)


async def chat(request: Request) -> Response:
    return await _generate(request, "chat")


async def completions(request: Request) -> Response:
    return await _generate(request, "text")


async def chat_v0(request: Request) -> Response:
    """LM Studio's own REST flavour: the OpenAI answer plus `stats`, `model_info` and `runtime`."""
    standin = standin_of(request)
    response = await _generate(request, "chat")
    if isinstance(response, JSONResponse) and response.status_code == 200:
        body = json.loads(bytes(response.body))
        body["stats"] = {
            "tokens_per_second": standin.config.tokens_per_second or 1000.0,
            "time_to_first_token": standin.config.first_token_delay,
            "generation_time": 0.0,
            "stop_reason": "eosFound",
        }
        body["model_info"] = {
            "arch": "standin",
            "quant": "Q4_K_M",
            "format": "gguf",
            "context_length": standin.config.context_length,
        }
        body["runtime"] = {"name": "lmstudio-standin", "version": "0.1.0"}
        return JSONResponse(body)
    return response


async def embeddings(request: Request) -> Response:
    standin = standin_of(request)
    body = await json_body(request)
    if isinstance(body, JSONResponse):
        return body
    model = standin.resolve_embedder(str(body.get("model", "")))
    if isinstance(model, tuple):
        return error(model)
    inputs = body.get("input")
    texts = [inputs] if isinstance(inputs, str) else inputs
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts) or not texts:
        return error(b.bad_request("'input' must be a string or an array of strings"))
    used = sum(b.count_tokens(t) for t in texts)
    data = [{"object": "embedding", "embedding": b.embedding_for(t), "index": i} for i, t in enumerate(texts)]
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "model": model.id,
            "usage": {"prompt_tokens": used, "total_tokens": used},
        }
    )


ROUTES = [
    Route("/v1/chat/completions", chat, methods=["POST"]),
    Route("/v1/completions", completions, methods=["POST"]),
    Route("/v1/embeddings", embeddings, methods=["POST"]),
    Route("/api/v0/chat/completions", chat_v0, methods=["POST"]),
    Route("/api/v0/completions", completions, methods=["POST"]),
    Route("/api/v0/embeddings", embeddings, methods=["POST"]),
]
