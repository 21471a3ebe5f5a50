"""The stand-in's request log (`/__standin/requests`): what reached "LM Studio", for tests to assert on."""

from __future__ import annotations

import httpx

from lmstudio_client import LMStudioClient
from lmstudio_client.testing import StandinProcess, run_standin

ECHO = "lmstudio-standin/echo-7b"
MESSAGES = [
    {"role": "system", "content": "You are Ada, a patient tutor."},
    {"role": "user", "content": "Explain recursion — briefly, please."},
]


def test_chat_completion_messages_are_logged_exactly(standin: StandinProcess) -> None:
    body = {"model": ECHO, "messages": MESSAGES, "temperature": 0.7}

    response = httpx.post(
        f"{standin.url}/v1/chat/completions", json=body, headers={"X-Request-ID": "req-42"}, timeout=5
    )

    assert response.status_code == 200
    logged = standin.requests()[-1]
    assert logged["method"] == "POST" and logged["path"] == "/v1/chat/completions"
    assert logged["body"] == body and logged["body"]["messages"] == MESSAGES
    assert logged["request_id"] == "req-42" and logged["authorization"] is False
    assert logged["received_at"].endswith("+00:00")


def test_requests_are_listed_oldest_first_and_limit_gives_the_last(standin: StandinProcess) -> None:
    for prompt in ("one", "two", "three"):
        httpx.post(f"{standin.url}/v1/completions", json={"model": ECHO, "prompt": prompt}, timeout=5)

    everything = standin.requests()
    last_two = standin.requests(limit=2)

    assert [r["body"]["prompt"] for r in everything] == ["one", "two", "three"]
    assert [r["body"]["prompt"] for r in last_two] == ["two", "three"]
    assert standin.requests(limit=10) == everything


def test_the_log_keeps_only_the_last_request_log_size(standin: StandinProcess) -> None:
    standin.configure(request_log_size=3)

    for index in range(5):
        httpx.post(f"{standin.url}/v1/embeddings", json={"input": f"text {index}"}, timeout=5)

    assert [r["body"]["input"] for r in standin.requests()] == ["text 2", "text 3", "text 4"]


def test_a_bad_request_log_size_or_limit_is_a_400(standin: StandinProcess) -> None:
    bad_size = httpx.patch(f"{standin.url}/__standin/config", json={"request_log_size": -1}, timeout=5)
    bad_limit = httpx.get(f"{standin.url}/__standin/requests", params={"limit": "x"}, timeout=5)

    assert bad_size.status_code == 400 and bad_limit.status_code == 400


def test_reset_and_delete_clear_the_log(standin: StandinProcess) -> None:
    httpx.post(f"{standin.url}/v1/completions", json={"model": ECHO, "prompt": "hi"}, timeout=5)
    standin.reset()
    after_reset = standin.requests()
    httpx.post(f"{standin.url}/v1/completions", json={"model": ECHO, "prompt": "hi"}, timeout=5)
    standin.clear_requests()

    assert after_reset == [] and standin.requests() == []


def test_control_calls_are_not_logged(standin: StandinProcess) -> None:
    standin.configure(tokens_per_second=0)
    standin.stats()
    standin.requests()

    httpx.get(f"{standin.url}/v1/models", timeout=5)

    assert [(r["method"], r["path"]) for r in standin.requests()] == [("GET", "/v1/models")]


async def test_streamed_requests_are_logged(standin: StandinProcess) -> None:
    request = {"model": ECHO, "messages": MESSAGES, "stream_options": {"include_usage": True}}
    async with LMStudioClient(standin.url) as client:
        chunks = [c async for c in client.stream_chat(request)]

    logged = standin.requests()[-1]

    assert chunks and logged["path"] == "/v1/chat/completions"
    assert logged["body"]["stream"] is True and logged["body"]["messages"] == MESSAGES


def test_v0_requests_are_logged(standin: StandinProcess) -> None:
    body = {"model": ECHO, "messages": MESSAGES}

    httpx.post(f"{standin.url}/api/v0/chat/completions", json=body, timeout=5)

    assert standin.requests()[-1]["path"] == "/api/v0/chat/completions"


def test_a_body_that_is_not_json_is_logged_as_null_and_answered_as_before(standin: StandinProcess) -> None:
    response = httpx.post(
        f"{standin.url}/v1/chat/completions",
        content=b"model=echo&messages=hi",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    )
    body = {"model": ECHO, "messages": MESSAGES}
    after = httpx.post(f"{standin.url}/v1/chat/completions", json=body, timeout=5)

    logged = standin.requests()
    assert response.status_code == 400 and "Invalid JSON" in response.json()["error"]
    assert after.status_code == 200
    assert logged[0]["body"] is None and logged[1]["body"]["messages"] == MESSAGES


def test_the_api_key_is_never_logged_only_its_presence(standin: StandinProcess) -> None:
    standin.configure(api_key="sekrit")
    try:
        refused = httpx.get(f"{standin.url}/v1/models", timeout=5)
        allowed = httpx.get(f"{standin.url}/v1/models", headers={"Authorization": "Bearer sekrit"}, timeout=5)
    finally:
        standin.configure(api_key=None)

    logged = standin.requests()
    assert refused.status_code == 401 and allowed.status_code == 200
    assert [r["authorization"] for r in logged] == [False, True]
    assert "sekrit" not in str(logged)


def test_the_command_line_sets_the_log_size_and_reset_keeps_it() -> None:
    with run_standin("--request-log-size", "2") as small:
        small.reset()
        for index in range(3):
            httpx.post(f"{small.url}/v1/completions", json={"model": ECHO, "prompt": f"p{index}"}, timeout=5)

        assert [r["body"]["prompt"] for r in small.requests()] == ["p1", "p2"]
        assert small.configure()["request_log_size"] == 2
