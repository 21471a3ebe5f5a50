"""A model LM Studio refuses is explained: not loaded (503 `no_model_loaded`) or unknown (404
`model_not_found` listing the ids there are); with JIT loading on, a downloaded model simply answers."""

from __future__ import annotations

import httpx
import pytest

from lmstudio_client.testing import StandinProcess
from tests.conftest import ECHO, EMBED, MINI, chat_body, sse_events

BIG = "lmstudio-standin/echo-70b"  # downloaded, not loaded


@pytest.mark.parametrize("stream", [False, True])
async def test_unknown_model_is_404_listing_the_available_model_ids(
    client: httpx.AsyncClient, stream: bool
) -> None:
    response = await client.post("/api/v1/chat/completions", json=chat_body(model="gpt-4o", stream=stream))

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "model_not_found"
    assert error["details"]["model"] == "gpt-4o"
    assert set(error["details"]["available"]) == {ECHO, MINI, BIG}  # the chat models, not the embedder
    assert all(model in error["message"] for model in (ECHO, MINI, BIG))


async def test_embeddings_with_a_chat_model_is_404_listing_the_embedding_models(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/api/v1/embeddings", json={"model": ECHO, "input": "a"})

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "model_not_found" and error["details"]["available"] == [EMBED]
    assert EMBED in error["message"]


async def test_unknown_model_detail_lists_every_model(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/models/nobody/none")

    assert response.status_code == 404
    assert set(response.json()["error"]["details"]["available"]) == {ECHO, MINI, BIG, EMBED}


@pytest.mark.parametrize("stream", [False, True])
async def test_with_jit_loading_a_downloaded_model_is_loaded_and_answers(
    client: httpx.AsyncClient, stream: bool
) -> None:
    response = await client.post("/api/v1/chat/completions", json=chat_body("hi", model=BIG, stream=stream))

    assert response.status_code == 200, response.text
    reply = sse_events(response.text)[0] if stream else response.json()
    assert reply["model"] == BIG
    assert (await client.get(f"/api/v1/models/{BIG}")).json()["state"] == "loaded"


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("stream", [False, True])
async def test_without_jit_loading_a_model_not_loaded_is_503_no_model_loaded(
    client: httpx.AsyncClient, standin: StandinProcess, stream: bool, legacy: bool
) -> None:
    standin.configure(jit_loading=False, legacy_errors=legacy)

    response = await client.post("/api/v1/chat/completions", json=chat_body(model=BIG, stream=stream))

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "no_model_loaded" and BIG in error["message"]
    assert error["details"]["model"] == BIG and "lms load" in error["details"]["hint"]
    assert ECHO in error["details"]["loaded"] and BIG not in error["details"]["loaded"]
