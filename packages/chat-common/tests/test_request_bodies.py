"""Deeply nested JSON anywhere in a request body is a 422 in the shared shape, never a 500."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import Body, FastAPI, Request
from pydantic import BaseModel

from chat_common.app import create_service_app
from chat_common.settings import CommonSettings
from chat_common.testing import serve_app
from chat_common.validation import MAX_JSON_DEPTH, InputModel, contains_nul, json_depth_exceeds


class Item(InputModel):
    """Extra fields are ignored (pydantic's default): nesting hides in a field nobody reads."""

    name: str


class Document(BaseModel):
    data: dict[str, Any]


def nested_arrays(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_objects(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def make_app() -> FastAPI:
    app = create_service_app(CommonSettings(service_name="demo"), title="demo", description="demo")

    @app.post("/items")
    async def create_item(item: Item) -> dict[str, str]:
        return {"name": item.name}

    @app.post("/documents")
    async def create_document(document: Document) -> Document:
        return document

    @app.patch("/documents")
    async def patch_document(patch: dict[str, Any] = Body()) -> dict[str, Any]:
        return patch

    return app


@pytest.fixture
async def client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=make_app(), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://demo")


def assert_too_deep(response: httpx.Response) -> None:
    assert response.status_code == 422, response.text
    assert response.json()["error"] == {
        "code": "validation_error",
        "message": f"JSON is nested deeper than {MAX_JSON_DEPTH} levels",
        "details": None,
        "request_id": response.headers["X-Request-ID"],
    }


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 300, 900, 100_000])
@pytest.mark.parametrize("nest", [nested_arrays, nested_objects])
async def test_deep_nesting_in_an_ignored_field_is_422(
    client: httpx.AsyncClient, depth: int, nest: Any
) -> None:
    body = '{"name": "x", "ignored": ' + nest(depth) + "}"
    response = await client.post("/items", content=body, headers={"Content-Type": "application/json"})
    assert_too_deep(response)


@pytest.mark.parametrize("depth", [300, 100_000])
async def test_deep_nesting_in_free_form_json_is_422(client: httpx.AsyncClient, depth: int) -> None:
    body = '{"data": {"k": ' + nested_objects(depth) + "}}"
    response = await client.post("/documents", content=body, headers={"Content-Type": "application/json"})
    assert_too_deep(response)
    patch = await client.patch(
        "/documents",
        content='{"k": ' + nested_arrays(depth) + "}",
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert_too_deep(patch)


async def test_nesting_up_to_the_limit_is_accepted(client: httpx.AsyncClient) -> None:
    inner: Any = 1
    for _ in range(MAX_JSON_DEPTH - 2):  # the body's object and `data` are two levels
        inner = [inner]
    body = {"data": {"k": inner}}
    response = await client.post("/documents", json=body)
    assert response.status_code == 200
    assert response.json() == body


async def test_brackets_inside_strings_do_not_count(client: httpx.AsyncClient) -> None:
    text = '[{"\\"' * 10_000
    response = await client.post("/documents", json={"data": {"text": text}})
    assert response.status_code == 200
    assert response.json() == {"data": {"text": text}}


async def test_deep_nesting_streamed_over_real_http_in_many_chunks_is_422() -> None:
    nested = nested_arrays(100_000).encode()

    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"name": "x", "ignored": '
        for start in range(0, len(nested), 4096):
            yield nested[start : start + 4096]
        yield b"}"

    with serve_app(make_app()) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            json_type = {"Content-Type": "application/json"}
            response = await http.post("/items", content=chunks(), headers=json_type)
            assert_too_deep(response)
            fine = await http.post("/items", json={"name": "x", "ignored": [[["ok"]]]})
            assert fine.status_code == 200 and fine.json() == {"name": "x"}


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ("[]", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('["[[[[", "\\"[[[", {"}}}}": "]"}]', 2),
        ("[[]] [[[]]]", 3),
        (nested_arrays(100_000), 100_000),
    ],
)
@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32-be"])
def test_json_depth_is_measured_without_parsing(text: str, depth: int, encoding: str) -> None:
    body = text.encode(encoding)
    assert json_depth_exceeds(body, depth - 1) is True
    assert json_depth_exceeds(body, depth) is False


def test_a_utf16_body_cannot_hide_its_brackets() -> None:
    # U+225B is the bytes 5B 22 in UTF-16-LE: a "[" and a quote when read as bytes.
    text = "[" * 100 + '"\u225b"' + "]" * 100
    assert json.loads(text.encode("utf-16")) is not None
    assert json_depth_exceeds(text.encode("utf-16"), 99) is True


# --- the content type is read as FastAPI reads it --------------------------------------------------


@pytest.mark.parametrize(
    "content_types",
    [
        [b"application/json", b"text/plain"],  # FastAPI reads the first of two headers
        [b"application/json", b"application/octet-stream", b"text/plain"],
        [b"application/json\xa0"],  # FastAPI's parser strips Unicode whitespace (latin-1 NBSP)
        [b"Application/JSON ; charset=utf-8"],
    ],
    ids=repr,
)
async def test_nesting_is_refused_whatever_content_type_headers_hide_it(content_types: list[bytes]) -> None:
    body = ('{"name": "x", "ignored": ' + nested_arrays(500) + "}").encode()
    headers = [(b"Content-Type", value) for value in content_types]
    with serve_app(make_app()) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            response = await http.post("/items", content=body, headers=headers)
            assert_too_deep(response)
            shallow = await http.post("/items", content=b'{"name": "x", "ignored": [[1]]}', headers=headers)
            assert shallow.status_code == 200 and shallow.json() == {"name": "x"}


async def test_a_non_json_first_content_type_is_not_scanned() -> None:
    """FastAPI does not parse it as JSON either: a text body may hold any brackets."""
    app = make_app()

    @app.post("/text")
    async def text(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    body = nested_arrays(500).encode()
    headers = [(b"Content-Type", b"text/plain"), (b"Content-Type", b"application/json")]
    with serve_app(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            response = await http.post("/text", content=body, headers=headers)
    assert response.status_code == 200 and response.json() == {"bytes": 1000}


@pytest.mark.parametrize("depth", [10_000, 200_000])
def test_nul_search_does_not_recurse(depth: int) -> None:
    value: Any = "deep\x00"
    clean: Any = "deep"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
        clean = [clean] if level % 2 else {"k": clean}
    assert contains_nul(value) is True
    assert contains_nul(clean) is False
    assert contains_nul({"a\x00": 1}) is True
    assert contains_nul(("x", ["y", {"z": "\x00"}])) is True
    assert contains_nul({"a": [1, 2.5, None, True], "b": "c"}) is False
