"""Typed async client for LM Studio's HTTP API over httpx."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from lmstudio_client.errors import (
    LMStudioError,
    LMStudioTimeout,
    LMStudioUnavailable,
    ModelNotFound,
    NotLMStudio,
    StreamInterrupted,
    UnsupportedByServer,
    UpstreamError,
    error_from_body,
    error_message,
)
from lmstudio_client.types import (
    ChatChunk,
    ChatCompletion,
    Completion,
    Embeddings,
    Health,
    LoadResult,
    ModelInfo,
)

T = TypeVar("T", bound=BaseModel)

# Keys that mark a body as a real answer; a 200 whose body has `error` and none of these is an error.
_ANSWER_KEYS = frozenset({"choices", "data", "object", "id", "models", "instance_id", "status"})
_RICH_FIELDS = (
    "type",
    "state",
    "max_context_length",
    "loaded_context_length",
    "quantization",
    "arch",
    "publisher",
    "compatibility_type",
)


@dataclass(frozen=True)
class Timeouts:
    """Seconds. `first_token` is generous: prompt processing and JIT loading take a while.

    `models` bounds the calls that generate nothing (model list and info, health): they answer at
    once unless LM Studio hangs, so a hung server is told promptly. `load` bounds loading and
    unloading a model, which can legitimately take minutes. `first_token`, `idle` and `total` bound
    generation (chat, completions, embeddings)."""

    connect: float = 5.0
    first_token: float = 300.0
    idle: float = 60.0
    total: float = 900.0
    models: float = 10.0
    load: float = 300.0


class LMStudioClient:
    """One client per base URL; safe to share across tasks. `transport`: httpx's own unless given
    (llm-service gives chat_common's aiohttp-pooled one, which costs far less CPU per stream)."""

    def __init__(
        self,
        base_url: str = "http://localhost:1234",
        *,
        api_key: str | None = None,
        timeouts: Timeouts | None = None,
        max_connections: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeouts = timeouts or Timeouts()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(None, connect=self.timeouts.connect),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> LMStudioClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    # -- plumbing -------------------------------------------------------------------------------

    async def _send(
        self, request: httpx.Request, *, stream: bool, within: float, phase: str | None = None
    ) -> httpx.Response:
        try:
            return await asyncio.wait_for(self._http.send(request, stream=stream), within)
        except TimeoutError as exc:
            phase = phase or ("first_token" if stream else "total")
            raise LMStudioTimeout(f"LM Studio did not answer within {within:g}s", phase=phase) from exc
        except httpx.ConnectTimeout as exc:
            raise LMStudioTimeout(
                f"Connecting to LM Studio at {self.base_url} timed out", phase="connect"
            ) from exc
        except (httpx.ConnectError, httpx.NetworkError) as exc:
            raise LMStudioUnavailable(f"LM Studio is unreachable at {self.base_url}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"LM Studio request failed: {exc.__class__.__name__}: {exc}") from exc

    @staticmethod
    def _parse(response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            if response.status_code >= 400:
                raise error_from_body(response.status_code, response.text) from None
            raise NotLMStudio(f"Not an LM Studio answer (not JSON): {response.text[:120]!r}") from None
        if response.status_code >= 400:
            raise error_from_body(response.status_code, body)
        if isinstance(body, dict) and "error" in body and not (_ANSWER_KEYS & body.keys()):
            raise error_from_body(response.status_code, body)
        return body

    async def _json(
        self,
        method: str,
        path: str,
        payload: Mapping[str, Any] | None = None,
        *,
        within: float | None = None,
        phase: str | None = None,
    ) -> Any:
        """One request answered within `within` seconds (default: the generation's `total`)."""
        request = self._http.build_request(method, path, json=payload)
        limit = self.timeouts.total if within is None else within
        response = await self._send(request, stream=False, within=limit, phase=phase)
        return self._parse(response)

    async def _stream_events(self, path: str, payload: Mapping[str, Any]) -> AsyncGenerator[dict[str, Any]]:
        """SSE `data:` objects until `[DONE]`, with first-token, idle and total deadlines."""
        t = self.timeouts
        deadline = time.monotonic() + t.total
        body = {**payload, "stream": True, "stream_options": {"include_usage": True}}
        request = self._http.build_request("POST", path, json=body)
        response = await self._send(request, stream=True, within=min(t.first_token, t.total))
        try:
            if response.status_code >= 400 or "text/event-stream" not in response.headers.get(
                "content-type", ""
            ):
                await response.aread()
                self._parse(response)  # raises for every error shape
                raise NotLMStudio("LM Studio answered a stream request without streaming")
            lines = response.aiter_lines()
            started = False
            while True:
                phase, limit = ("idle", t.idle) if started else ("first_token", t.first_token)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LMStudioTimeout(
                        f"Generation exceeded the total timeout of {t.total:g}s", phase="total"
                    )
                try:
                    line = await asyncio.wait_for(anext(lines), min(limit, remaining))
                except StopAsyncIteration:
                    raise StreamInterrupted("LM Studio closed the stream before [DONE]") from None
                except TimeoutError as exc:
                    which = phase if limit <= remaining else "total"
                    raise LMStudioTimeout(
                        f"No data from LM Studio for {min(limit, remaining):g}s", phase=which
                    ) from exc
                except httpx.HTTPError as exc:
                    raise StreamInterrupted(f"LM Studio stream broke: {exc.__class__.__name__}") from exc
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                event = _event(data)
                if error_message(event) is not None:
                    raise error_from_body(200, event)
                started = True
                yield event
        finally:
            await response.aclose()

    # -- models -----------------------------------------------------------------------------------

    async def list_models(self) -> list[ModelInfo]:
        """`/v1/models`, enriched with type, state, context length and quantization from `/api/v0`;
        both within one `timeouts.models`."""
        limit = self.timeouts.models
        deadline = time.monotonic() + limit
        body = await self._json("GET", "/v1/models", within=limit, phase="models")
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise NotLMStudio(f"{self.base_url}/v1/models is not LM Studio's model list")
        models = {m["id"]: ModelInfo.model_validate(m) for m in body["data"]}
        try:
            remaining = max(deadline - time.monotonic(), 0.001)
            rich = await self._json("GET", "/api/v0/models", within=remaining, phase="models")
        except (NotLMStudio, UpstreamError, LMStudioError):
            return list(models.values())  # an older server without /api/v0
        for entry in rich.get("data", []) if isinstance(rich, dict) else []:
            base = models.get(entry["id"]) or ModelInfo(id=entry["id"])
            models[entry["id"]] = base.model_copy(
                update={k: entry.get(k) for k in _RICH_FIELDS if k in entry}
            )
        return list(models.values())

    async def get_model(self, model_id: str) -> ModelInfo:
        for model in await self.list_models():
            if model.id == model_id:
                return model
        raise ModelNotFound(f"Model {model_id!r} not found", status=404)

    async def load_model(self, model: str, *, context_length: int | None = None) -> LoadResult:
        """Load a model (LM Studio 0.4+ native API)."""
        payload: dict[str, Any] = {"model": model}
        if context_length:
            payload["context_length"] = context_length
        return LoadResult.model_validate(await self._native("/api/v1/models/load", payload))

    async def unload_model(self, instance_id: str) -> None:
        await self._native("/api/v1/models/unload", {"instance_id": instance_id})

    async def _native(self, path: str, payload: Mapping[str, Any]) -> Any:
        try:
            return await self._json("POST", path, payload, within=self.timeouts.load, phase="load")
        except NotLMStudio as exc:
            raise UnsupportedByServer(
                "Loading and unloading models needs LM Studio 0.4 or newer", status=exc.status, body=exc.body
            ) from exc

    # -- generation -------------------------------------------------------------------------------

    async def chat(self, payload: Mapping[str, Any]) -> ChatCompletion:
        body = await self._json("POST", "/v1/chat/completions", {**payload, "stream": False})
        return ChatCompletion.model_validate(body)

    async def stream_chat(self, payload: Mapping[str, Any]) -> AsyncGenerator[ChatChunk]:
        """Chunks as they arrive; the last one carries `usage`."""
        async for event in self._stream_events("/v1/chat/completions", payload):
            yield ChatChunk.model_validate(event)

    async def complete(self, payload: Mapping[str, Any]) -> Completion:
        body = await self._json("POST", "/v1/completions", {**payload, "stream": False})
        return Completion.model_validate(body)

    async def stream_completion(self, payload: Mapping[str, Any]) -> AsyncGenerator[Completion]:
        async for event in self._stream_events("/v1/completions", payload):
            yield Completion.model_validate(event)

    async def embeddings(self, payload: Mapping[str, Any]) -> Embeddings:
        return Embeddings.model_validate(await self._json("POST", "/v1/embeddings", payload))

    # -- health -----------------------------------------------------------------------------------

    async def health(self) -> Health:
        """Tell "down" (nothing answers) apart from "not LM Studio" (wrong base URL or another server)."""
        try:
            models = await self.list_models()
        except (LMStudioUnavailable, LMStudioTimeout) as exc:
            return Health(status="down", base_url=self.base_url, detail=exc.message)
        except LMStudioError as exc:
            detail = f"{self.base_url} does not serve LM Studio's API ({exc.message}); check the base URL"
            return Health(status="not_lmstudio", base_url=self.base_url, detail=detail)
        loaded = [m.id for m in models if m.is_loaded]
        return Health(status="ok", base_url=self.base_url, models=loaded)


def _event(data: str) -> dict[str, Any]:
    """One streamed `data:` line as its JSON object; anything else (cut-off or non-JSON text, a bare
    value) is LM Studio failing mid-answer, never a crash of the caller."""
    try:
        event = json.loads(data)
    except ValueError:
        event = None
    if not isinstance(event, dict):
        raise UpstreamError(f"LM Studio sent a malformed stream event: {data[:120]!r}")
    return event
