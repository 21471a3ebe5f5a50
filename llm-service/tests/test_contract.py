"""One suite, two doors: lmstudio-client straight to the stand-in, and llm-service in front of it.

Both run over real HTTP. Each adapter gives the same answers (text, model, usage) and names
failures by the same kinds, so every case below checks both doors alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from lmstudio_client import (
    ContextLengthExceeded,
    LMStudioClient,
    LMStudioError,
    LMStudioTimeout,
    LMStudioUnavailable,
    ModelCrashed,
    ModelNotFound,
    NoModelLoaded,
    StreamInterrupted,
    Timeouts,
)
from lmstudio_client.testing import StandinProcess
from tests.conftest import ECHO, EMBED, MINI, chat_body, sse_events

KINDS = {
    ModelNotFound: "model_not_found",
    NoModelLoaded: "no_model_loaded",
    ContextLengthExceeded: "context_length_exceeded",
    ModelCrashed: "model_crashed",
    LMStudioTimeout: "llm_timeout",
    LMStudioUnavailable: "llm_unavailable",
    StreamInterrupted: "llm_error",
}


class Failure(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass
class Reply:
    text: str
    model: str
    usage: dict[str, int]
    finish_reason: str | None


class Direct:
    name = "client"

    def __init__(self, url: str) -> None:
        self.client = LMStudioClient(url, timeouts=Timeouts(connect=1, first_token=1.5, idle=5, total=20))

    @staticmethod
    def _kind(exc: LMStudioError) -> Failure:
        return Failure(next(kind for cls, kind in KINDS.items() if isinstance(exc, cls)))

    async def models(self) -> list[dict[str, Any]]:
        return [m.model_dump() for m in await self.client.list_models()]

    async def chat(self, body: dict[str, Any]) -> Reply:
        try:
            done = await self.client.chat(body)
        except LMStudioError as exc:
            raise self._kind(exc) from exc
        assert done.usage is not None
        return Reply(done.text, done.model, done.usage.model_dump(), done.choices[0].finish_reason)

    async def stream(self, body: dict[str, Any]) -> Reply:
        text, model, usage, finish = "", "", {}, None
        try:
            async for chunk in self.client.stream_chat(body):
                text += chunk.text
                model = chunk.model
                finish = next((c.finish_reason for c in chunk.choices if c.finish_reason), finish)
                usage = chunk.usage.model_dump() if chunk.usage else usage
        except LMStudioError as exc:
            raise self._kind(exc) from exc
        return Reply(text, model, usage, finish)

    async def complete(self, prompt: str) -> str:
        return (await self.client.complete({"model": ECHO, "prompt": prompt})).choices[0].text

    async def embed(self, inputs: list[str]) -> list[list[float]]:
        return [d.embedding for d in (await self.client.embeddings({"model": EMBED, "input": inputs})).data]

    async def aclose(self) -> None:
        await self.client.aclose()


class ThroughService:
    name = "llm-service"

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.AsyncClient(
            base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    @staticmethod
    def _check(response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            raise Failure(response.json()["error"]["code"])
        return dict(response.json())

    async def models(self) -> list[dict[str, Any]]:
        return list(self._check(await self.http.get("/models"))["data"])

    async def chat(self, body: dict[str, Any]) -> Reply:
        done = self._check(await self.http.post("/chat/completions", json=body))
        choice = done["choices"][0]
        return Reply(choice["message"]["content"], done["model"], done["usage"], choice["finish_reason"])

    async def stream(self, body: dict[str, Any]) -> Reply:
        async with self.http.stream("POST", "/chat/completions", json={**body, "stream": True}) as response:
            if response.status_code >= 400:
                await response.aread()
                self._check(response)
            events = sse_events((await response.aread()).decode())
        text, model, usage, finish = "", "", {}, None
        for event in events:
            if event == "[DONE]":
                break
            if "error" in event:
                raise Failure(event["error"]["code"])
            model = event["model"]
            for choice in event["choices"]:
                text += choice["delta"].get("content") or ""
                finish = choice.get("finish_reason") or finish
            usage = event.get("usage") or usage
        else:
            raise AssertionError("stream ended without [DONE] or an error event")
        return Reply(text, model, usage, finish)

    async def complete(self, prompt: str) -> str:
        done = self._check(await self.http.post("/completions", json={"model": ECHO, "prompt": prompt}))
        return str(done["choices"][0]["text"])

    async def embed(self, inputs: list[str]) -> list[list[float]]:
        done = self._check(await self.http.post("/embeddings", json={"model": EMBED, "input": inputs}))
        return [d["embedding"] for d in done["data"]]

    async def aclose(self) -> None:
        await self.http.aclose()


@pytest.fixture(params=["client", "llm-service"])
async def door(request: pytest.FixtureRequest, standin: StandinProcess) -> AsyncIterator[Any]:
    adapter: Any
    if request.param == "client":
        adapter = Direct(standin.url)
    else:
        adapter = ThroughService(request.getfixturevalue("llm_url"), request.getfixturevalue("user_token"))
    yield adapter
    await adapter.aclose()


async def test_models_are_listed_with_state_type_and_context(door: Any) -> None:
    models = {m["id"]: m for m in await door.models()}
    assert models[ECHO]["type"] == "llm" and models[ECHO]["state"] == "loaded"
    assert models[ECHO]["max_context_length"] == 32768 and models[ECHO]["quantization"] == "Q4_K_M"
    assert models["lmstudio-standin/echo-70b"]["state"] == "not-loaded"
    assert models[EMBED]["type"] == "embeddings"


async def test_chat_reply_is_derived_from_the_prompt(door: Any) -> None:
    reply = await door.chat(chat_body("tell me a story"))
    assert reply.text == "You said: tell me a story"
    assert reply.model == ECHO and reply.finish_reason == "stop"
    assert reply.usage == {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}


async def test_streamed_reply_reassembles_to_the_plain_one_with_usage(door: Any) -> None:
    body = chat_body("the same words 🌊 either way", model=MINI)
    plain, streamed = await door.chat(body), await door.stream(body)
    assert streamed.text == plain.text == "You said: the same words 🌊 either way"
    assert streamed.model == plain.model == MINI
    assert streamed.usage == plain.usage and streamed.finish_reason == "stop"


async def test_max_tokens_truncates_with_length(door: Any) -> None:
    reply = await door.chat(chat_body("one two three four five", max_tokens=3))
    assert reply.text == "You said: one " and reply.finish_reason == "length"


async def test_text_completion(door: Any) -> None:
    assert await door.complete("Once upon a time") == "You said: Once upon a time"


async def test_embeddings_are_deterministic_per_input(door: Any) -> None:
    first, second, again = await door.embed(["alpha", "beta", "alpha"])
    assert len(first) == 16 and first == again and first != second


@pytest.mark.parametrize("legacy", [False, True])
async def test_unknown_model_is_model_not_found(door: Any, standin: StandinProcess, legacy: bool) -> None:
    standin.configure(legacy_errors=legacy)
    with pytest.raises(Failure) as info:
        await door.chat(chat_body(model="nobody/no-such-model"))
    assert info.value.kind == "model_not_found"


async def test_unknown_model_is_served_by_the_only_loaded_one_and_named(
    door: Any, standin: StandinProcess
) -> None:
    async with httpx.AsyncClient() as http:
        unloaded = await http.post(f"{standin.url}/api/v1/models/unload", json={"instance_id": MINI})
    unloaded.raise_for_status()
    reply = await door.chat(chat_body(model="gpt-4o"))
    assert reply.model == ECHO


@pytest.mark.parametrize("legacy", [False, True])
async def test_no_model_loaded(door: Any, standin: StandinProcess, legacy: bool) -> None:
    standin.configure(failure="no_model_loaded", legacy_errors=legacy)
    with pytest.raises(Failure) as info:
        await door.chat(chat_body())
    assert info.value.kind == "no_model_loaded"


@pytest.mark.parametrize("streamed", [False, True])
async def test_context_overflow(door: Any, standin: StandinProcess, streamed: bool) -> None:
    standin.configure(context_length=10)
    with pytest.raises(Failure) as info:
        await (door.stream if streamed else door.chat)(chat_body("word " * 11))
    assert info.value.kind == "context_length_exceeded"


async def test_model_crash(door: Any, standin: StandinProcess) -> None:
    standin.configure(failure="crash")
    with pytest.raises(Failure) as info:
        await door.chat(chat_body())
    assert info.value.kind == "model_crashed"


async def test_slow_first_token_times_out(door: Any, standin: StandinProcess) -> None:
    standin.configure(first_token_delay=3)
    with pytest.raises(Failure) as info:
        await door.stream(chat_body())
    assert info.value.kind == "llm_timeout"


async def test_disconnect_mid_stream_is_an_error_not_a_hang(door: Any, standin: StandinProcess) -> None:
    standin.configure(failure="disconnect", disconnect_after=2)
    with pytest.raises(Failure) as info:
        await door.stream(chat_body("a long enough prompt to stream"))
    assert info.value.kind == "llm_error"
