"""The stand-in's HTTP server (Starlette): LM Studio's endpoints, shapes, SSE framing and errors."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from lmstudio_client.standin import behaviour as b

logger = logging.getLogger("lmstudio_client.standin")

FAILURES = ("no_model_loaded", "crash", "disconnect")


@dataclass
class StandinModel:
    id: str
    type: str = "llm"
    state: str = "loaded"
    max_context_length: int = 32768
    quantization: str = "Q4_K_M"
    arch: str = "standin"


def default_models() -> list[StandinModel]:
    return [
        StandinModel("lmstudio-standin/echo-7b"),
        StandinModel("lmstudio-standin/echo-mini", quantization="Q8_0"),
        StandinModel("lmstudio-standin/echo-70b", state="not-loaded"),
        StandinModel(
            "lmstudio-standin/embed-small", type="embeddings", quantization="F16", max_context_length=2048
        ),
    ]


@dataclass
class StandinConfig:
    """Everything tests may switch; PATCH `/__standin/config` with any of these fields."""

    models: list[StandinModel] = field(default_factory=default_models)
    tokens_per_second: float = 0.0  # 0: as fast as possible
    first_token_delay: float = 0.0
    context_length: int = 4096  # the loaded context length of every LLM
    failure: str | None = None  # one of FAILURES
    disconnect_after: int = 3  # chunks sent before a "disconnect" failure drops the connection
    legacy_errors: bool = False  # older builds: string errors, 404 for unknown models
    native_api: bool = True  # the 0.4+ /api/v1 model management endpoints
    api_key: str | None = None


@dataclass
class Stats:
    """What the stand-in saw: tests read it at `/__standin/stats`."""

    requests: int = 0
    active: int = 0
    max_active: int = 0
    completed: int = 0
    cancelled: int = 0


class Standin:
    def __init__(self, config: StandinConfig) -> None:
        self.config = config
        self.stats = Stats()

    # -- models -----------------------------------------------------------------------------------

    def loaded_llms(self) -> list[StandinModel]:
        return [m for m in self.config.models if m.type != "embeddings" and m.state == "loaded"]

    def find(self, model_id: str) -> StandinModel | None:
        return next((m for m in self.config.models if m.id == model_id), None)

    def resolve_llm(self, requested: str | None) -> StandinModel | tuple[int, dict[str, Any]]:
        """The model that will answer, or an error body. With one LLM loaded, any name gets it."""
        loaded = self.loaded_llms()
        if self.config.failure == "no_model_loaded" or not loaded:
            return b.no_model_loaded(self.config.legacy_errors)
        model = self.find(requested or "")
        if model is not None and model.state == "loaded" and model.type != "embeddings":
            return model
        if len(loaded) == 1:
            return loaded[0]
        return b.model_not_found(requested or "", self.config.legacy_errors)

    def v0_entry(self, m: StandinModel) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": m.id,
            "object": "model",
            "type": m.type,
            "publisher": "lmstudio-standin",
            "arch": m.arch,
            "compatibility_type": "gguf",
            "quantization": m.quantization,
            "state": m.state,
            "max_context_length": m.max_context_length,
            "capabilities": [],
        }
        if m.state == "loaded":
            entry["loaded_context_length"] = self.config.context_length
        return entry

    # -- generation -------------------------------------------------------------------------------

    async def token_pause(self, index: int) -> None:
        if index == 0 and self.config.first_token_delay:
            await asyncio.sleep(self.config.first_token_delay)
        if self.config.tokens_per_second:
            await asyncio.sleep(1 / self.config.tokens_per_second)

    def begin(self) -> None:
        self.stats.requests += 1
        self.stats.active += 1
        self.stats.max_active = max(self.stats.max_active, self.stats.active)

    def end(self, *, cancelled: bool) -> None:
        self.stats.active -= 1
        if cancelled:
            self.stats.cancelled += 1
        else:
            self.stats.completed += 1


def _error(status_and_body: tuple[int, dict[str, Any]]) -> JSONResponse:
    status, body = status_and_body
    return JSONResponse(body, status_code=status)


async def _body(request: Request) -> dict[str, Any] | JSONResponse:
    try:
        body = await request.json()
    except ValueError:
        return _error(b.bad_request("Invalid JSON in request body"))
    if not isinstance(body, dict):
        return _error(b.bad_request("Request body must be a JSON object"))
    return body


def _sse(event: dict[str, Any] | str) -> bytes:
    data = event if isinstance(event, str) else json.dumps(event, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def create_app(config: StandinConfig | None = None) -> Starlette:
    standin = Standin(config or StandinConfig())

    async def generate(request: Request, kind: str) -> Response:
        body = await _body(request)
        if isinstance(body, JSONResponse):
            return body
        resolved = standin.resolve_llm(body.get("model"))
        if isinstance(resolved, tuple):
            return _error(resolved)
        if kind == "chat":
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                return _error(b.bad_request("'messages' field is required and must be a non-empty array"))
            used = b.prompt_tokens(messages)
            last_user = next((m for m in reversed(messages) if m.get("role") == "user"), messages[-1])
            reply = b.reply_for(b.message_text(last_user.get("content")))
        else:
            prompt = body.get("prompt")
            if not isinstance(prompt, str):
                return _error(b.bad_request("'prompt' field is required and must be a string"))
            used = b.count_tokens(prompt)
            reply = b.reply_for(prompt)
        response_format = body.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") == "json_object":
            return _error(b.bad_request("'response_format.type' must be 'json_schema' or 'text'"))
        if used > standin.config.context_length:
            return _error(b.context_overflow(used, standin.config.context_length))
        if standin.config.failure == "crash":
            return _error(b.crashed())
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
                stream(request, kind, pieces, finish, common, usage if include_usage else None),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        return await whole(request, kind, pieces, finish, common, usage)

    async def whole(
        request: Request,
        kind: str,
        pieces: list[str],
        finish: str,
        common: dict[str, Any],
        usage: dict[str, int],
    ) -> Response:
        standin.begin()
        cancelled = False
        try:
            for index in range(len(pieces)):
                await standin.token_pause(index)
                if await request.is_disconnected():
                    cancelled = True
                    return Response(status_code=499)
        finally:
            standin.end(cancelled=cancelled)
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

    async def stream(
        request: Request,
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
                if standin.config.failure == "disconnect" and index >= standin.config.disconnect_after:
                    raise ConnectionAbortedError("stand-in drops the connection mid-stream (failure mode)")
                if kind == "chat":
                    delta = {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
                    choice: dict[str, Any] = {
                        "index": 0,
                        "delta": delta,
                        "logprobs": None,
                        "finish_reason": None,
                    }
                else:
                    choice = {"index": 0, "text": piece, "logprobs": None, "finish_reason": None}
                yield _sse({**common, "object": obj, **extra, "choices": [choice]})
            last: dict[str, Any] = (
                {"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}
                if kind == "chat"
                else {"index": 0, "text": "", "logprobs": None, "finish_reason": finish}
            )
            yield _sse({**common, "object": obj, **extra, "choices": [last]})
            if usage is not None:
                yield _sse({**common, "object": obj, **extra, "choices": [], "usage": usage})
            yield _sse("[DONE]")
            finished = True
        finally:
            standin.end(cancelled=not finished)

    async def chat(request: Request) -> Response:
        return await generate(request, "chat")

    async def completions(request: Request) -> Response:
        return await generate(request, "text")

    async def chat_v0(request: Request) -> Response:
        response = await generate(request, "chat")
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
        body = await _body(request)
        if isinstance(body, JSONResponse):
            return body
        model = standin.find(str(body.get("model", "")))
        embedders = [m for m in standin.config.models if m.type == "embeddings" and m.state == "loaded"]
        if model is None or model.type != "embeddings":
            if len(embedders) == 1 and model is None:
                model = embedders[0]
            else:
                return _error(b.model_not_found(str(body.get("model", "")), standin.config.legacy_errors))
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts) or not texts:
            return _error(b.bad_request("'input' must be a string or an array of strings"))
        used = sum(b.count_tokens(t) for t in texts)
        data = [
            {"object": "embedding", "embedding": b.embedding_for(t), "index": i} for i, t in enumerate(texts)
        ]
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": model.id,
                "usage": {"prompt_tokens": used, "total_tokens": used},
            }
        )

    async def models_v1(_: Request) -> Response:
        loaded = [m for m in standin.config.models if m.state == "loaded"]
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": m.id, "object": "model", "owned_by": "organization_owner"} for m in loaded],
            }
        )

    async def models_v0(_: Request) -> Response:
        return JSONResponse({"object": "list", "data": [standin.v0_entry(m) for m in standin.config.models]})

    async def model_v0(request: Request) -> Response:
        model = standin.find(request.path_params["model_id"])
        if model is None:
            return _error(b.model_not_found(request.path_params["model_id"], True))
        return JSONResponse(standin.v0_entry(model))

    async def native_models(_: Request) -> Response:
        return JSONResponse(
            {
                "models": [
                    {
                        "key": m.id,
                        "display_name": m.id.split("/")[-1],
                        "type": m.type,
                        "max_context_length": m.max_context_length,
                        "loaded_instances": (
                            [{"id": m.id, "config": {"context_length": standin.config.context_length}}]
                            if m.state == "loaded"
                            else []
                        ),
                    }
                    for m in standin.config.models
                ]
            }
        )

    async def native_load(request: Request) -> Response:
        body = await _body(request)
        if isinstance(body, JSONResponse):
            return body
        model = standin.find(str(body.get("model", "")))
        if model is None:
            return _error(b.model_not_found(str(body.get("model", "")), False))
        model.state = "loaded"
        return JSONResponse({"instance_id": model.id, "status": "loaded", "load_time_seconds": 0.01})

    async def native_unload(request: Request) -> Response:
        body = await _body(request)
        if isinstance(body, JSONResponse):
            return body
        model = standin.find(str(body.get("instance_id", "")))
        if model is None or model.state != "loaded":
            return _error(b.bad_request(f"No loaded instance {body.get('instance_id')!r}"))
        model.state = "not-loaded"
        return JSONResponse({"instance_id": model.id})

    async def control_config(request: Request) -> Response:
        if request.method == "PATCH":
            body = await _body(request)
            if isinstance(body, JSONResponse):
                return body
            for key, value in body.items():
                if key == "models":
                    standin.config.models = [StandinModel(**m) for m in value]
                elif hasattr(standin.config, key):
                    setattr(standin.config, key, value)
                else:
                    return _error(b.bad_request(f"unknown stand-in setting {key!r}"))
            logger.info("stand-in config changed: %s", body)
        return JSONResponse(asdict(standin.config))

    async def control_stats(_: Request) -> Response:
        return JSONResponse(asdict(standin.stats))

    async def control_reset(_: Request) -> Response:
        standin.config = StandinConfig(api_key=standin.config.api_key)
        standin.stats = Stats()
        return JSONResponse(asdict(standin.config))

    routes = [
        Route("/v1/models", models_v1, methods=["GET"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/api/v0/models", models_v0, methods=["GET"]),
        Route("/api/v0/models/{model_id:path}", model_v0, methods=["GET"]),
        Route("/api/v0/chat/completions", chat_v0, methods=["POST"]),
        Route("/api/v0/completions", completions, methods=["POST"]),
        Route("/api/v0/embeddings", embeddings, methods=["POST"]),
        Route("/api/v1/models", native_models, methods=["GET"]),
        Route("/api/v1/models/load", native_load, methods=["POST"]),
        Route("/api/v1/models/unload", native_unload, methods=["POST"]),
        Route("/__standin/config", control_config, methods=["GET", "PATCH"]),
        Route("/__standin/stats", control_stats, methods=["GET"]),
        Route("/__standin/reset", control_reset, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.standin = standin

    async def lmstudio_quirks(scope: Any, receive: Any, send: Any) -> None:
        """LM Studio answers unknown paths and methods with a 200 carrying only `error`."""
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        request = Request(scope, receive)
        key = standin.config.api_key
        if (
            key
            and not scope["path"].startswith("/__standin")
            and request.headers.get("authorization") != f"Bearer {key}"
        ):
            await _error((401, {"error": "Invalid or missing API key"}))(scope, receive, send)
            return
        for route in routes:
            match, _ = route.matches(scope)
            native = route.path.startswith("/api/v1/")  # type: ignore[attr-defined]
            if match.name == "FULL" and (standin.config.native_api or not native):
                await app(scope, receive, send)
                return
        await _error(b.unexpected_endpoint(scope["method"], scope["path"]))(scope, receive, send)

    lmstudio_quirks.state = app.state  # type: ignore[attr-defined]
    return lmstudio_quirks  # type: ignore[return-value]
