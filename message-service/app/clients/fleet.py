"""The other services as message-service uses them, over HTTP with one shared service token."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import aconnect_sse

from app.config import Settings
from chat_common.credits import CreditsClient
from chat_common.errors import AppError, BadGatewayError, GatewayTimeoutError, NotFoundError
from chat_common.http import ServiceClient
from chat_common.service_token import ServiceTokenProvider
from chat_common.transport import PooledTransport

SCOPES = [
    "credits:write",
    "characters:read_private",
    "characters:counters",
    "conversations:read",
    "conversations:write",
    "llm:generate",
]
LLM = "llm-service"
FORGET_BATCH = 200  # conversation-service's most message ids per deleted-messages call


class Fleet:
    """One HTTP client per downstream service and the service token they share."""

    def __init__(self, settings: Settings) -> None:
        timeout = settings.downstream_timeout_seconds
        self.users = ServiceClient("user-service", settings.user_service_url, read_timeout=timeout)
        self.characters_http = ServiceClient(
            "character-service", settings.character_service_url, read_timeout=timeout
        )
        self.conversations_http = ServiceClient(
            "conversation-service", settings.conversation_service_url, read_timeout=timeout
        )
        self.llm_http = ServiceClient(LLM, settings.llm_service_url, read_timeout=timeout)
        self.tokens = ServiceTokenProvider(
            self.users,
            client_id=settings.message_service_client_id,
            client_secret=settings.message_service_client_secret.get_secret_value(),
            scopes=SCOPES,
        )
        self.credits = CreditsClient(self.users, self.tokens, caller="message-service")
        # Generation streams for minutes: no overall timeout, only one between chunks (a hung
        # llm-service must not keep a reply generating, and its conversation locked, for ever).
        self.llm_idle_timeout = settings.llm_idle_timeout_seconds
        self.llm_stream = httpx.AsyncClient(
            base_url=settings.llm_service_url,
            timeout=httpx.Timeout(None, connect=3.0, read=settings.llm_idle_timeout_seconds),
            transport=PooledTransport(),
        )

    async def aclose(self) -> None:
        for client in (self.users, self.characters_http, self.conversations_http, self.llm_http):
            await client.aclose()
        await self.llm_stream.aclose()

    async def _token(self) -> str:
        return await self.tokens.token()

    async def _read(self, http: ServiceClient, path: str, missing: NotFoundError) -> dict[str, Any]:
        """GET `path` with the service token; a 404 downstream is `missing`."""
        try:
            response = await http.get(path, token=await self._token())
        except AppError as exc:
            if exc.status_code == 404:
                raise missing from exc
            raise
        body: dict[str, Any] = response.json()
        return body

    async def conversation(self, conversation_id: str) -> dict[str, Any]:
        missing = NotFoundError("Conversation not found", code="conversation_not_found")
        return await self._read(
            self.conversations_http, f"/api/v1/internal/conversations/{conversation_id}", missing
        )

    async def record_activities(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Messages stored in several conversations, in one call: each item's answer (its status)."""
        response = await self.conversations_http.post(
            "/api/v1/internal/conversations/activity",
            json={"items": items},
            token=await self._token(),
            idempotent=True,  # counted once per message id
        )
        answers: list[dict[str, Any]] = response.json()["items"]
        return answers

    async def forget_messages(self, conversation_id: str, message_ids: list[str]) -> None:
        """Messages deleted: conversation-service takes them out of the conversation's count (once per
        message id, and none counted again later), in calls of at most FORGET_BATCH ids."""
        path = f"/api/v1/internal/conversations/{quote(conversation_id, safe='')}/deleted-messages"
        for start in range(0, len(message_ids), FORGET_BATCH):
            await self.conversations_http.post(
                path,
                json={"message_ids": message_ids[start : start + FORGET_BATCH]},
                token=await self._token(),
                idempotent=True,  # each id taken out once
            )

    async def deleted_conversations(self, since: str) -> dict[str, Any]:
        response = await self.conversations_http.get(
            "/api/v1/internal/conversations/deleted", params={"since": since}, token=await self._token()
        )
        body: dict[str, Any] = response.json()
        return body

    async def changed_conversations(self, since_ms: int) -> dict[str, Any]:
        """`{"ids", "until", "complete"}`: the conversations changed at or after `since_ms`."""
        response = await self.conversations_http.get(
            "/api/v1/internal/conversations/changed", params={"since": since_ms}, token=await self._token()
        )
        body: dict[str, Any] = response.json()
        return body

    async def character(self, character_id: str) -> dict[str, Any]:
        missing = NotFoundError("Character not found", code="character_not_found")
        return await self._read(self.characters_http, f"/api/v1/characters/{character_id}", missing)

    async def change_counters(self, changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Keyed counter changes of several characters, in one call: each change's answer."""
        response = await self.characters_http.post(
            "/api/v1/internal/characters/counters",
            json={"changes": changes},
            token=await self._token(),
            idempotent=True,  # applied once per character and key
        )
        answers: list[dict[str, Any]] = response.json()["items"]
        return answers

    async def context_length(self, model: str | None) -> int | None:
        """The model's context length as llm-service reports it (None when it does not say)."""
        path = f"/api/v1/models/{quote(model, safe='')}" if model else "/api/v1/models"
        response = await self.llm_http.get(path, token=await self._token())
        body = response.json()
        entries = [body] if model else [m for m in body.get("data", []) if m.get("state") == "loaded"]
        for entry in entries:
            for key in ("loaded_context_length", "context_length", "max_context_length"):
                if isinstance(entry.get(key), int):
                    return int(entry[key])
        return None

    async def stream_chat(self, payload: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """llm-service's chat completion as parsed SSE chunks; an error before or during the stream is
        raised as an AppError naming llm-service (its code kept in `details.code`)."""
        headers = {"Authorization": f"Bearer {await self._token()}"}
        try:
            async with aconnect_sse(
                self.llm_stream, "POST", "/api/v1/chat/completions", json=payload, headers=headers
            ) as source:
                if source.response.status_code >= 400:
                    await source.response.aread()
                    raise _llm_error(source.response.status_code, _error_of(source.response.text))
                done = False
                async for event in source.aiter_sse():
                    # Read on to the end of the body after [DONE]: a response left unread closes its
                    # connection, and the next reply would connect to llm-service again.
                    if done or event.data == "[DONE]":
                        done = True
                        continue
                    chunk = json.loads(event.data)
                    if "error" in chunk:
                        # a timeout upstream is a gateway timeout, mid-stream or not
                        timed_out = chunk["error"].get("code") == "llm_timeout"
                        raise _llm_error(504 if timed_out else 502, chunk["error"])
                    yield chunk
        except httpx.ReadTimeout as exc:
            raise GatewayTimeoutError(
                f"{LLM} sent nothing for {self.llm_idle_timeout:g} s",
                code="llm_timeout",
                details={"service": LLM},
            ) from exc
        except httpx.HTTPError as exc:
            raise BadGatewayError(
                f"{LLM} failed: {exc.__class__.__name__}", code="llm_error", details={"service": LLM}
            ) from exc


def _error_of(text: str) -> dict[str, Any]:
    try:
        error = json.loads(text)["error"]
        return error if isinstance(error, dict) else {"message": str(error)}
    except (ValueError, KeyError, TypeError):
        return {"message": text[:200]}


def _llm_error(status: int, error: dict[str, Any]) -> AppError:
    code = str(error.get("code") or "llm_error")
    exc = AppError(
        str(error.get("message") or "The model failed"),
        code=code,
        details={"service": LLM, **(error.get("details") or {})},
    )
    exc.status_code = status if status >= 400 else 502
    return exc
