"""The OpenAPI document describes what generation answers: OpenAI's reply objects, and SSE when streamed."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest


@pytest.fixture(scope="module")
def openapi(llm_url: str) -> dict[str, Any]:
    response = httpx.get(f"{llm_url}/openapi.json", timeout=10)
    assert response.status_code == 200
    return dict(response.json())


def _schema(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """`node`, or the component its `$ref` names."""
    ref = node.get("$ref")
    return dict(document["components"]["schemas"][ref.rsplit("/", 1)[1]]) if ref else node


def _ok(document: dict[str, Any], path: str, method: str = "post") -> dict[str, Any]:
    return dict(document["paths"][path][method]["responses"]["200"]["content"])


def test_chat_completion_reply_is_an_openai_chat_completion(openapi: dict[str, Any]) -> None:
    content = _ok(openapi, "/api/v1/chat/completions")

    reply = _schema(openapi, content["application/json"]["schema"])
    assert {"id", "object", "created", "model", "choices", "usage"} <= set(reply["properties"])
    choice = _schema(openapi, reply["properties"]["choices"]["items"])
    message = _schema(openapi, choice["properties"]["message"])
    assert {"role", "content"} <= set(message["properties"])


@pytest.mark.parametrize("path", ["/api/v1/chat/completions", "/api/v1/completions"])
def test_streamed_replies_are_documented_as_server_sent_events(openapi: dict[str, Any], path: str) -> None:
    stream = _ok(openapi, path)["text/event-stream"]

    assert "data: [DONE]" in stream["example"] and "[DONE]" in stream["schema"]["description"]
    chunk = stream["schema"]["properties"]["data"]["anyOf"][1]["contentSchema"]
    assert "choices" in chunk["properties"]


def test_completion_and_embeddings_replies_are_documented(openapi: dict[str, Any]) -> None:
    completion = _schema(openapi, _ok(openapi, "/api/v1/completions")["application/json"]["schema"])
    text = _schema(openapi, completion["properties"]["choices"]["items"])
    assert "text" in text["properties"]
    embeddings = _schema(openapi, _ok(openapi, "/api/v1/embeddings")["application/json"]["schema"])
    vector = _schema(openapi, embeddings["properties"]["data"]["items"])
    assert vector["properties"]["embedding"]["type"] == "array"


def test_model_list_is_documented(openapi: dict[str, Any]) -> None:
    listed = _schema(openapi, _ok(openapi, "/api/v1/models", "get")["application/json"]["schema"])
    model = _schema(openapi, listed["properties"]["data"]["items"])
    assert {"id", "type", "state", "max_context_length"} <= set(model["properties"])


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi there"}]}),
        ("/api/v1/completions", {"prompt": "Once upon"}),
    ],
)
async def test_each_streamed_event_is_what_the_document_says(
    openapi: dict[str, Any], client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    """A streamed reply's events as documented: JSON chunks whose required fields the chunk schema
    lists (a text completion's chunks have no `timing` until the last), then `[DONE]`, which the
    event's data schema allows beside the JSON (the schema fuzzer found both wrong)."""
    response = await client.post(path, json={**body, "stream": True, "max_tokens": 8})
    assert response.status_code == 200, response.text
    data = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"

    event = _ok(openapi, path)["text/event-stream"]["schema"]
    assert event["required"] == ["data"]
    done, json_text = event["properties"]["data"]["anyOf"]
    assert done == {"const": "[DONE]"} and json_text["contentMediaType"] == "application/json"
    required = set(json_text["contentSchema"]["required"])
    assert "timing" not in required
    for chunk in data[:-1]:
        assert required <= set(json.loads(chunk))
