"""Generation through LM Studio: model choice, the concurrency gate, timing and error mapping."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from app.config import Settings
from app.services.errors import missing_model, redact, upstream_error
from app.services.gate import ConcurrencyGate
from chat_common.errors import AppError
from lmstudio_client import (
    ChatCompletion,
    Completion,
    LMStudioClient,
    LMStudioError,
    ModelInfo,
    ModelNotFound,
    NoModelLoaded,
)

T = TypeVar("T")


def _timing(started: float, first_token: float | None, completion_tokens: int | None) -> dict[str, Any]:
    now = time.perf_counter()
    generating = now - (first_token or started)
    rate = completion_tokens / generating if completion_tokens and generating > 0 else None
    return {
        "total_ms": round((now - started) * 1000, 2),
        "first_token_ms": round((first_token - started) * 1000, 2) if first_token else None,
        "tokens_per_second": round(rate, 2) if rate else None,
    }


@dataclass
class Progress:
    """How far one call got, filled in as it runs: what its bill is computed from."""

    started: bool = False  # LM Studio was asked (the call got a slot)
    failed: bool = False  # LM Studio failed (error, timeout) after being asked
    generated: int = 0  # streamed chunks carrying output: one token each in LM Studio's streams
    completion_tokens: int | None = None  # LM Studio's own count (usage), once it reports it

    @property
    def tokens(self) -> int:
        return self.completion_tokens if self.completion_tokens is not None else self.generated

    def count(self, event: dict[str, Any]) -> None:
        usage = event.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            self.completion_tokens = usage["completion_tokens"]
        if any(_generates(choice) for choice in event.get("choices") or ()):
            self.generated += 1


def _generates(choice: Any) -> bool:
    """A streamed choice carries generated output: text, or any delta field but `role` (content,
    `reasoning_content` thinking, `tool_calls`...), since all of it reaches the client."""
    if not isinstance(choice, dict):
        return False
    delta = choice.get("delta")
    fields = delta.items() if isinstance(delta, dict) else ()
    return bool(choice.get("text")) or any(value for name, value in fields if name != "role")


def _dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=False)


class LLMService:
    """The one door to LM Studio."""

    def __init__(self, client: LMStudioClient, gate: ConcurrencyGate, settings: Settings) -> None:
        self.client = client
        self.gate = gate
        self.settings = settings
        self._models: list[ModelInfo] = []
        self._models_at = 0.0

    async def call(
        self, operation: Callable[[], Awaitable[T]], *, model: str | None = None, kind: str = "llm"
    ) -> T:
        """`operation`'s result; LM Studio's failures as the fleet's errors. With `model`, a refused
        model is explained from the model list (not loaded, or which ids there are)."""
        try:
            return await operation()
        except ModelNotFound as exc:
            if model is None:
                raise upstream_error(exc, self.client.base_url) from exc
            raise await self._refused(exc, model, kind) from exc
        except LMStudioError as exc:
            raise upstream_error(exc, self.client.base_url) from exc

    async def _refused(self, exc: ModelNotFound, model: str, kind: str | None) -> AppError:
        try:
            models = await self.models(fresh=True)
        except AppError:  # the list failed too: say what LM Studio said
            return upstream_error(exc, self.client.base_url)
        return missing_model(exc, model, models, kind=kind)

    # -- models -----------------------------------------------------------------------------------

    async def models(self, *, fresh: bool = False) -> list[ModelInfo]:
        if fresh or time.monotonic() - self._models_at > self.settings.models_cache_seconds:
            self._models = await self.call(self.client.list_models)
            self._models_at = time.monotonic()
        return self._models

    async def model(self, model_id: str) -> ModelInfo:
        models = await self.models(fresh=True)
        found = next((m for m in models if m.id == model_id), None)
        if found is None:
            raise missing_model(ModelNotFound(f"Model {model_id!r} not found"), model_id, models, kind=None)
        return found

    async def load(self, model_id: str, context_length: int | None) -> dict[str, Any]:
        result = await self.call(lambda: self.client.load_model(model_id, context_length=context_length))
        self._models_at = 0.0
        return _dump(result)

    async def unload(self, model_id: str) -> None:
        await self.call(lambda: self.client.unload_model(model_id))
        self._models_at = 0.0

    async def resolve_model(self, requested: str | None) -> str:
        """Alias, then the name asked for, then DEFAULT_MODEL, then the first loaded LLM."""
        if requested:
            return self.settings.model_aliases.get(requested, requested)
        if self.settings.default_model:
            return self.settings.model_aliases.get(self.settings.default_model, self.settings.default_model)
        loaded = [m for m in await self.models() if m.is_loaded and m.is_llm]
        if not loaded:
            loaded = [m for m in await self.models(fresh=True) if m.is_loaded and m.is_llm]
        if not loaded:
            raise upstream_error(NoModelLoaded("No models loaded"), self.client.base_url)
        return loaded[0].id

    # -- generation -------------------------------------------------------------------------------

    async def generate(self, kind: str, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
        """A whole chat or text completion, with usage and timing; the reply names the real model."""
        payload = {**payload, "model": await self.resolve_model(payload.get("model"))}
        async with self.gate.slot():
            started = time.perf_counter()
            progress.started = True
            result: ChatCompletion | Completion
            model = payload["model"]
            if kind == "chat":
                result = await self.call(lambda: self.client.chat(payload), model=model)
            else:
                result = await self.call(lambda: self.client.complete(payload), model=model)
        body = _dump(result)
        usage = result.usage.completion_tokens if result.usage else None
        progress.completion_tokens = usage or 0
        body["timing"] = _timing(started, None, usage)
        return body

    async def embeddings(self, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
        async with self.gate.slot():
            progress.started = True
            return _dump(
                await self.call(
                    lambda: self.client.embeddings(payload), model=payload.get("model"), kind="embeddings"
                )
            )

    async def open_stream(self, kind: str, payload: dict[str, Any], progress: Progress) -> ChunkStream:
        """Take a slot and wait for the first chunk, so that errors before streaming are plain HTTP errors.

        Cancelled while queued or waiting (the client left), it gives the slot back at once."""
        payload = {**payload, "model": await self.resolve_model(payload.get("model"))}
        await self.gate.acquire()
        started = time.perf_counter()
        progress.started = True
        source: AsyncGenerator[BaseModel] = (
            self.client.stream_chat(payload) if kind == "chat" else self.client.stream_completion(payload)
        )
        try:
            first = _dump(await self.call(lambda: anext(source), model=payload["model"]))
        except BaseException:
            await source.aclose()
            self.gate.release()
            raise
        progress.count(first)
        return ChunkStream(self, source, first, started, progress, first_at=time.perf_counter())

    async def status(self) -> dict[str, Any]:
        health = await self.client.health()
        return {
            "lmstudio": {
                "reachable": health.status == "ok",
                "status": health.status,
                "detail": redact(health.detail, self.client.base_url),
            },
            "loaded_models": health.models,
            "queue": {
                "active": self.gate.active,
                "waiting": self.gate.waiting,
                "limit": self.gate.limit,
                "max_queue": self.gate.max_queue,
            },
        }


class ChunkStream:
    """An open upstream stream holding a gate slot until it is closed (always, even on disconnect)."""

    def __init__(
        self,
        service: LLMService,
        source: AsyncGenerator[BaseModel],
        first: dict[str, Any],
        started: float,
        progress: Progress,
        *,
        first_at: float,
    ) -> None:
        self._service = service
        self._source = source
        self._first = first
        self._started = started
        self._first_at = first_at
        self.progress = progress
        self._on_close: list[Callable[[], Awaitable[None]]] = []
        self._closed = False

    def on_close(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run `callback` once the stream is closed and its slot given back (e.g. to settle credits)."""
        self._on_close.append(callback)

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Chunks in OpenAI's format; the usage chunk gains `timing`; an error becomes a last event."""
        yield self._first
        error: AppError | None = None
        try:
            async for chunk in self._source:
                event = _dump(chunk)
                self.progress.count(event)
                if event.get("usage"):
                    event["timing"] = _timing(
                        self._started, self._first_at, event["usage"].get("completion_tokens")
                    )
                yield event
        except LMStudioError as exc:
            self.progress.failed = True
            error = upstream_error(exc, self._service.client.base_url)
        await self.aclose()  # the slot is free and the bill settled before the client sees the end
        if error is not None:
            yield {"error": {"code": error.code, "message": error.message, "details": error.details}}

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._source.aclose()  # closes the upstream connection: LM Studio stops generating
        finally:
            self._service.gate.release()
            for callback in self._on_close:
                await callback()
