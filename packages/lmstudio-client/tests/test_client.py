"""The client against the stand-in over real HTTP: health, model management, keys, timeouts, cancel."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from lmstudio_client import (
    BadRequest,
    LMStudioClient,
    LMStudioTimeout,
    NotLMStudio,
    Timeouts,
    UnsupportedByServer,
    UpstreamError,
)
from lmstudio_client.testing import StandinProcess, _free_port, run_standin

ECHO = "lmstudio-standin/echo-7b"


@pytest.fixture
def not_lmstudio() -> Iterator[str]:
    """Some other web server: answers, but not LM Studio's API."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html>Welcome to nginx</html>"
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            """Keep test output quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


async def test_health_ok_lists_loaded_models(standin: StandinProcess) -> None:
    async with LMStudioClient(standin.url) as client:
        health = await client.health()
    assert (
        health.status == "ok" and ECHO in health.models and "lmstudio-standin/echo-70b" not in health.models
    )


async def test_health_tells_down_from_not_lmstudio(standin: StandinProcess, not_lmstudio: str) -> None:
    async with LMStudioClient(f"http://127.0.0.1:{_free_port()}", timeouts=Timeouts(connect=1)) as client:
        assert (await client.health()).status == "down"
    async with LMStudioClient(f"{standin.url}/v1") as client:  # the classic mistake: base URL with /v1
        wrong = await client.health()
    assert wrong.status == "not_lmstudio" and "Unexpected endpoint" in wrong.detail
    async with LMStudioClient(not_lmstudio) as client:
        assert (await client.health()).status == "not_lmstudio"


async def test_load_and_unload_on_04(standin: StandinProcess) -> None:
    async with LMStudioClient(standin.url) as client:
        result = await client.load_model("lmstudio-standin/echo-70b", context_length=8192)
        assert result.status == "loaded"
        assert (await client.get_model("lmstudio-standin/echo-70b")).state == "loaded"
        await client.unload_model(result.instance_id)
        assert (await client.get_model("lmstudio-standin/echo-70b")).state == "not-loaded"


async def test_load_on_older_server_is_a_clear_error(standin: StandinProcess) -> None:
    standin.configure(native_api=False)
    async with LMStudioClient(standin.url) as client:
        with pytest.raises(UnsupportedByServer, match="0.4"):
            await client.load_model(ECHO)


async def test_bearer_key_is_sent_when_configured() -> None:
    with run_standin("--api-key", "sekrit") as guarded:
        async with LMStudioClient(guarded.url) as anonymous:
            with pytest.raises(BadRequest) as info:
                await anonymous.list_models()
        assert info.value.status == 401
        async with LMStudioClient(guarded.url, api_key="sekrit") as client:
            assert any(m.id == ECHO for m in await client.list_models())


async def test_idle_gap_between_chunks_times_out(standin: StandinProcess) -> None:
    standin.configure(tokens_per_second=2)
    async with LMStudioClient(standin.url, timeouts=Timeouts(first_token=5, idle=0.2)) as client:
        with pytest.raises(LMStudioTimeout) as info:
            async for _ in client.stream_chat(
                {"model": ECHO, "messages": [{"role": "user", "content": "a b c"}]}
            ):
                continue
    assert info.value.phase == "idle"  # the first token came in time (0.5 s < 5 s); the gap after it did not


async def test_total_timeout_bounds_a_plain_request(standin: StandinProcess) -> None:
    standin.configure(tokens_per_second=5)
    async with LMStudioClient(standin.url, timeouts=Timeouts(total=0.3)) as client:
        with pytest.raises(LMStudioTimeout) as info:
            await client.chat({"model": ECHO, "messages": [{"role": "user", "content": "many words " * 10}]})
    assert info.value.phase == "total"


async def test_leaving_a_stream_early_cancels_generation(standin: StandinProcess) -> None:
    standin.configure(tokens_per_second=50)
    async with LMStudioClient(standin.url) as client:
        stream = client.stream_chat({"model": ECHO, "messages": [{"role": "user", "content": "word " * 100}]})
        async for _ in stream:
            break
        await stream.aclose()  # type: ignore[attr-defined]
    for _ in range(100):
        if standin.stats()["cancelled"] == 1:
            break
        await asyncio.sleep(0.05)
    assert standin.stats()["cancelled"] == 1 and standin.stats()["active"] == 0


async def test_streamed_text_completion(standin: StandinProcess) -> None:
    async with LMStudioClient(standin.url) as client:
        parts = [c async for c in client.stream_completion({"model": ECHO, "prompt": "Once upon"})]
    assert "".join(p.choices[0].text for p in parts if p.choices) == "You said: Once upon"
    assert parts[-1].usage is not None and parts[-1].usage.completion_tokens == 4


async def test_standin_v0_chat_reports_stats_like_lmstudio(standin: StandinProcess) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=standin.url) as http:
        body = {"model": ECHO, "messages": [{"role": "user", "content": "hi"}]}
        reply = (await http.post("/api/v0/chat/completions", json=body)).json()
        unknown = await http.post("/v1/nowhere", json={})
    assert set(reply["stats"]) == {
        "tokens_per_second",
        "time_to_first_token",
        "generation_time",
        "stop_reason",
    }
    assert reply["model_info"]["context_length"] == 4096 and reply["id"].startswith("chatcmpl-")
    assert unknown.status_code == 200 and unknown.json() == {
        "error": "Unexpected endpoint or method. (POST /v1/nowhere)"
    }


async def test_a_stalled_stream_sends_exactly_stall_after_chunks_then_times_out(
    standin: StandinProcess,
) -> None:
    standin.configure(failure="stall", stall_after=2)
    texts: list[str] = []
    async with LMStudioClient(standin.url, timeouts=Timeouts(first_token=5, idle=0.5)) as client:
        with pytest.raises(LMStudioTimeout) as info:
            async for chunk in client.stream_chat(
                {"model": ECHO, "messages": [{"role": "user", "content": "one two three four"}]}
            ):
                texts.append(chunk.text)
    assert texts == ["You ", "said: "] and info.value.phase == "idle"


async def test_leaving_a_plain_request_during_the_first_token_delay_is_seen_at_once(
    standin: StandinProcess,
) -> None:
    standin.configure(first_token_delay=60)
    async with httpx.AsyncClient(base_url=standin.url) as http:
        with pytest.raises(httpx.ReadTimeout):
            body = {"model": ECHO, "messages": [{"role": "user", "content": "hi"}]}
            await http.post("/v1/chat/completions", json=body, timeout=httpx.Timeout(10, read=0.5))
    for _ in range(100):
        if standin.stats()["cancelled"] == 1:
            break
        await asyncio.sleep(0.05)
    assert standin.stats() == {
        "requests": 1,
        "active": 0,
        "max_active": 1,
        "completed": 0,
        "cancelled": 1,
    }


# --- calls that generate nothing answer quickly even when LM Studio hangs ---


async def test_model_calls_and_health_have_their_own_short_bound(standin: StandinProcess) -> None:
    timeouts = Timeouts(models=0.5, total=120)  # hanging on `total` would fail the wait_for below
    async with LMStudioClient(standin.url, timeouts=timeouts) as client:
        assert [m.id for m in await client.list_models()]  # a pooled connection, then LM Studio hangs
        with standin.frozen():
            with pytest.raises(LMStudioTimeout) as listing:
                await asyncio.wait_for(client.list_models(), 30)
            with pytest.raises(LMStudioTimeout) as one:
                await asyncio.wait_for(client.get_model(ECHO), 30)
            health = await asyncio.wait_for(client.health(), 30)
    assert listing.value.phase == one.value.phase == "models"
    assert health.status == "down" and "0.5s" in (health.detail or "")


async def test_loading_has_its_own_longer_bound(standin: StandinProcess) -> None:
    async with LMStudioClient(standin.url, timeouts=Timeouts(models=0.2, load=1.0, total=120)) as client:
        with standin.frozen(), pytest.raises(LMStudioTimeout) as info:
            await asyncio.wait_for(client.load_model(ECHO), 30)
    assert info.value.phase == "load" and "1s" in info.value.message


async def test_a_stream_that_turns_to_garbage_is_an_upstream_error_after_the_good_chunks(
    standin: StandinProcess,
) -> None:
    standin.configure(failure="garbage", garbage_after=2)
    texts: list[str] = []
    async with LMStudioClient(standin.url) as client:
        with pytest.raises(UpstreamError, match="malformed stream event"):
            async for chunk in client.stream_chat(
                {"model": ECHO, "messages": [{"role": "user", "content": "one two three four"}]}
            ):
                texts.append(chunk.text)
    assert texts == ["You ", "said: "]


async def test_a_plain_answer_that_is_an_html_page_is_not_lmstudio(standin: StandinProcess) -> None:
    standin.configure(failure="garbage")
    async with LMStudioClient(standin.url) as client:
        with pytest.raises(NotLMStudio):
            await client.chat({"model": ECHO, "messages": [{"role": "user", "content": "hi"}]})
