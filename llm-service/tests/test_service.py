"""llm-service's own promises: statuses and codes, auth, status, queueing, cancellation, outages."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from app.main import create_app
from chat_common.embedded import free_port
from chat_common.testing import serve_app
from lmstudio_client.testing import StandinProcess, run_standin
from tests.conftest import ECHO, Account, chat_body, make_settings, sse_events


@pytest.mark.parametrize(
    ("setup", "body", "status", "code"),
    [
        ({}, chat_body(model="nobody/none"), 404, "model_not_found"),
        ({"failure": "no_model_loaded"}, chat_body(), 503, "no_model_loaded"),
        ({"context_length": 3}, chat_body("far too many words here"), 422, "context_length_exceeded"),
        ({"failure": "crash"}, chat_body(), 502, "model_crashed"),
        ({"first_token_delay": 3}, chat_body(stream=True), 504, "llm_timeout"),
    ],
)
async def test_upstream_errors_map_to_statuses_and_codes(
    client: httpx.AsyncClient,
    standin: StandinProcess,
    setup: dict[str, object],
    body: dict[str, object],
    status: int,
    code: str,
) -> None:
    standin.configure(**setup)
    response = await client.post("/api/v1/chat/completions", json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["request_id"]
    if code == "no_model_loaded":
        assert "lms load" in error["details"]["hint"]


async def test_reply_carries_usage_and_timing(client: httpx.AsyncClient) -> None:
    body = (await client.post("/api/v1/chat/completions", json=chat_body("timing please"))).json()
    assert (
        body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    )
    assert body["timing"]["total_ms"] > 0


async def test_streamed_final_chunk_has_usage_and_first_token_timing(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/chat/completions", json=chat_body("stream it", stream=True))
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    final = events[-2]
    assert final["choices"] == [] and final["usage"]["completion_tokens"] == 4
    assert final["timing"]["first_token_ms"] is not None


async def test_default_model_is_the_first_loaded_llm(client: httpx.AsyncClient) -> None:
    body = (await client.post("/api/v1/chat/completions", json=chat_body(model=None))).json()
    assert body["model"] == ECHO


async def test_aliases_and_default_model_from_config(
    standin: StandinProcess, user_service_url: str, user_token: str
) -> None:
    settings = make_settings(
        standin.url,
        user_service_url,
        default_model="fast",
        model_aliases={"fast": "lmstudio-standin/echo-mini"},
    )
    with serve_app(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {user_token}"}) as http:
            by_default = (await http.post("/api/v1/chat/completions", json=chat_body(model=None))).json()
            by_alias = (await http.post("/api/v1/chat/completions", json=chat_body(model="fast"))).json()
    assert by_default["model"] == by_alias["model"] == "lmstudio-standin/echo-mini"


@pytest.mark.parametrize(
    "body", [{"messages": []}, {"messages": [{"role": "robot", "content": "x"}]}, {"model": ECHO}, [1, 2]]
)
async def test_bad_requests_are_422(client: httpx.AsyncClient, body: object) -> None:
    response = await client.post("/api/v1/chat/completions", json=body)
    assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error"


async def test_every_api_endpoint_needs_a_token(llm_url: str) -> None:
    async with httpx.AsyncClient(base_url=llm_url) as http:
        for method, path in [
            ("GET", "/api/v1/models"),
            ("GET", "/api/v1/status"),
            ("POST", "/api/v1/chat/completions"),
            ("POST", "/api/v1/embeddings"),
            ("POST", "/api/v1/completions"),
            ("GET", f"/api/v1/models/{ECHO}"),
        ]:
            response = await http.request(method, path, json={})
            assert response.status_code == 401, path
        for path in ("/health", "/ready", "/metrics"):
            assert (await http.get(path)).status_code == 200


async def test_only_admins_load_and_unload(llm_url: str, admin_token: str, client: httpx.AsyncClient) -> None:
    model = "lmstudio-standin/echo-70b"
    assert (await client.post(f"/api/v1/models/{model}/load", json={})).status_code == 403
    admin = {"Authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(base_url=llm_url, headers=admin) as http:
        loaded = await http.post(f"/api/v1/models/{model}/load", json={"context_length": 8192})
        assert loaded.status_code == 200 and loaded.json()["status"] == "loaded"
        assert (await http.get(f"/api/v1/models/{model}")).json()["state"] == "loaded"
        assert (await http.post(f"/api/v1/models/{model}/unload")).status_code == 204
        assert (await http.get(f"/api/v1/models/{model}")).json()["state"] == "not-loaded"


async def test_unknown_model_detail_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/models/nobody/none")
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"


async def test_status_reports_lmstudio_models_and_queue(
    client: httpx.AsyncClient, standin: StandinProcess
) -> None:
    body = (await client.get("/api/v1/status")).json()
    assert body["lmstudio"] == {"reachable": True, "status": "ok", "detail": ""}
    assert ECHO in body["loaded_models"]
    assert body["queue"] == {"active": 0, "waiting": 0, "limit": 4, "max_queue": 16}


async def test_concurrency_limit_two_with_ten_slow_requests(
    standin: StandinProcess, user_service_url: str, user_token: str
) -> None:
    standin.configure(first_token_delay=0.3)
    settings = make_settings(standin.url, user_service_url, max_concurrency=2, max_queue=4)
    with serve_app(create_app(settings)) as url:
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {user_token}"}, timeout=30
        ) as http:
            responses = await asyncio.gather(
                *[http.post("/api/v1/chat/completions", json=chat_body(f"request {i}")) for i in range(10)]
            )
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {200, 429}
    assert statuses.count(200) >= 6  # 2 running + 4 queued
    for refused in (r for r in responses if r.status_code == 429):
        assert int(refused.headers["Retry-After"]) >= 1 and refused.json()["error"]["code"] == "llm_busy"
    stats = standin.stats()
    assert stats["max_active"] <= 2 and stats["completed"] == statuses.count(200)


async def test_client_disconnect_cancels_a_streamed_upstream_request(
    llm_url: str, user_token: str, standin: StandinProcess
) -> None:
    standin.configure(tokens_per_second=20)
    async with httpx.AsyncClient(base_url=llm_url, headers={"Authorization": f"Bearer {user_token}"}) as http:
        body = chat_body("word " * 200, stream=True)
        async with http.stream("POST", "/api/v1/chat/completions", json=body) as response:
            async for _ in response.aiter_lines():
                break  # read the first line, then hang up
    await _until(lambda: standin.stats()["cancelled"] == 1)
    assert standin.stats()["active"] == 0


async def test_client_disconnect_cancels_a_plain_upstream_request(
    llm_url: str, user_token: str, standin: StandinProcess
) -> None:
    standin.configure(tokens_per_second=20)
    async with httpx.AsyncClient(base_url=llm_url, headers={"Authorization": f"Bearer {user_token}"}) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post("/api/v1/chat/completions", json=chat_body("word " * 200), timeout=0.5)
        await _until(lambda: standin.stats()["cancelled"] == 1)
        status = (await http.get("/api/v1/status")).json()
    assert status["queue"]["active"] == 0


async def test_killing_lmstudio_mid_stream_ends_with_an_error_event(
    user_service_url: str, user_token: str
) -> None:
    headers = {"Authorization": f"Bearer {user_token}"}
    with (
        run_standin("--tokens-per-second", "20") as doomed,
        serve_app(create_app(make_settings(doomed.url, user_service_url))) as url,
    ):
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as http:
            body = chat_body("word " * 100, stream=True)
            async with http.stream("POST", "/api/v1/chat/completions", json=body) as response:
                lines = response.aiter_lines()
                assert (await anext(lines)).startswith("data: ")
                doomed.kill()
                rest = [line async for line in lines]
    events = sse_events("\n".join(rest))
    assert events and "error" in events[-1], rest
    assert events[-1]["error"]["code"] == "llm_error"
    assert "[DONE]" not in events


async def test_lmstudio_down_is_503_llm_unavailable(user_service_url: str, user_token: str) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    with serve_app(create_app(make_settings(nowhere, user_service_url))) as url:
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {user_token}"}) as http:
            response = await http.post("/api/v1/chat/completions", json=chat_body(), timeout=5)
            status = (await http.get("/api/v1/status")).json()
            ready = await http.get("/ready")
    assert response.status_code == 503 and response.json()["error"]["code"] == "llm_unavailable"
    assert status["lmstudio"]["reachable"] is False and status["lmstudio"]["status"] == "down"
    assert ready.status_code == 200  # /ready does not depend on LM Studio


async def _until(condition: object, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_wrong_base_url_is_reported_as_misconfiguration(
    standin: StandinProcess, user_service_url: str, user_token: str
) -> None:
    """A base URL ending in /v1 reaches LM Studio's 200-with-error answers: say so, not "200 OK"."""
    with serve_app(create_app(make_settings(f"{standin.url}/v1", user_service_url))) as url:
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {user_token}"}) as http:
            response = await http.post("/api/v1/chat/completions", json=chat_body())
            status = (await http.get("/api/v1/status")).json()
    assert response.status_code == 502 and response.json()["error"]["code"] == "llm_misconfigured"
    assert status["lmstudio"]["status"] == "not_lmstudio" and "base URL" in status["lmstudio"]["detail"]
    assert standin.url not in response.text and standin.url not in str(status)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/chat/completions", chat_body("x\ud800")),
        ("/api/v1/chat/completions", chat_body("x\ud800", stream=True)),
        ("/api/v1/completions", {"model": ECHO, "prompt": "x\udfff"}),
        ("/api/v1/embeddings", {"model": "lmstudio-standin/embed-small", "input": ["ok", "x\ud800"]}),
    ],
)
async def test_text_that_is_not_valid_unicode_is_422_before_anything_is_reserved(
    client: httpx.AsyncClient, account: Account, path: str, body: dict[str, object]
) -> None:
    # json.dumps writes the lone surrogate as its JSON escape, as a client would send it
    response = await client.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"})

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert "Unicode" in response.text
    assert [row["kind"] for row in account.ledger()] == ["signup_bonus"]  # nothing reserved


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/chat/completions", chat_body(top_p=False), "top_p"),
        ("/api/v1/chat/completions", chat_body(temperature="0.5"), "temperature"),
        ("/api/v1/chat/completions", chat_body(max_tokens=True), "max_tokens"),
        ("/api/v1/chat/completions", chat_body(stream="yes"), "stream"),
        ("/api/v1/completions", {"model": ECHO, "prompt": "Once", "top_p": True}, "top_p"),
        ("/api/v1/embeddings", {"model": "lmstudio-standin/embed-small", "input": 7}, "input"),
    ],
)
async def test_a_value_of_another_json_type_is_422_not_read_as_a_number_or_flag(
    client: httpx.AsyncClient, account: Account, path: str, body: dict[str, object], field: str
) -> None:
    """`top_p: false` is not 0, `"0.5"` not 0.5, `true` not 1 (the schema fuzzer found `top_p: false`
    answered 200 as if it were 0): the value's JSON type is the documented one, or it is a 422 naming
    the field, before anything is reserved."""
    response = await client.post(path, json=body)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert field in response.json()["error"]["message"]
    assert [row["kind"] for row in account.ledger()] == ["signup_bonus"]
