"""The stand-in loads models on demand as LM Studio does with JIT loading (its default), refuses them
as LM Studio does with it off, and reports model contexts that fit each model."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from lmstudio_client.testing import StandinProcess, run_standin

ECHO = "lmstudio-standin/echo-7b"
BIG = "lmstudio-standin/echo-70b"  # downloaded, not loaded
EMBED = "lmstudio-standin/embed-small"


def _chat(standin: StandinProcess, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi there"}]}
    return httpx.post(f"{standin.url}/v1/chat/completions", json=body, timeout=10)


def _v0(standin: StandinProcess, model: str) -> dict[str, Any]:
    return dict(httpx.get(f"{standin.url}/api/v0/models/{model}", timeout=5).json())


def _listed(standin: StandinProcess) -> list[str]:
    return [m["id"] for m in httpx.get(f"{standin.url}/v1/models", timeout=5).json()["data"]]


def test_jit_loading_is_on_by_default_and_lists_every_downloaded_model(standin: StandinProcess) -> None:
    assert standin.configure()["jit_loading"] is True
    assert BIG in _listed(standin) and _v0(standin, BIG)["state"] == "not-loaded"


def test_a_request_naming_a_downloaded_model_loads_it_and_is_answered(standin: StandinProcess) -> None:
    response = _chat(standin, BIG)

    assert response.status_code == 200, response.text
    assert response.json()["model"] == BIG
    assert response.json()["choices"][0]["message"]["content"] == "You said: hi there"
    entry = _v0(standin, BIG)
    assert entry["state"] == "loaded" and entry["loaded_context_length"] == 4096


def test_an_embedding_request_loads_its_model_on_demand(standin: StandinProcess) -> None:
    standin.configure(
        models=[
            {"id": ECHO},
            {"id": EMBED, "type": "embeddings", "state": "not-loaded", "max_context_length": 2048},
        ]
    )
    response = httpx.post(f"{standin.url}/v1/embeddings", json={"model": EMBED, "input": "a"}, timeout=5)
    assert response.status_code == 200 and response.json()["model"] == EMBED
    assert _v0(standin, EMBED)["state"] == "loaded"


def test_without_jit_a_model_that_is_not_loaded_is_an_invalid_identifier(standin: StandinProcess) -> None:
    standin.configure(jit_loading=False)

    response = _chat(standin, BIG)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "model_not_found" and "valid downloaded model" in error["message"]
    suggested = error["message"].split("(e.g., ")[1]
    assert ECHO in suggested and BIG not in suggested  # it suggests loaded models only
    assert _v0(standin, BIG)["state"] == "not-loaded"
    assert BIG not in _listed(standin) and ECHO in _listed(standin)


def test_without_jit_and_nothing_loaded_a_request_gets_no_models_loaded(standin: StandinProcess) -> None:
    standin.configure(jit_loading=False, models=[{"id": BIG, "state": "not-loaded"}])

    response = _chat(standin, BIG)

    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("No models loaded")
    assert _listed(standin) == []


def test_an_unknown_model_is_refused_naming_models_that_exist(standin: StandinProcess) -> None:
    response = _chat(standin, "nobody/none")
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert '"nobody/none"' in message and ECHO in message and EMBED not in message


def test_no_loaded_context_exceeds_its_models_maximum(standin: StandinProcess) -> None:
    standin.configure(context_length=8192)  # above the embedding model's 2,048
    httpx.post(f"{standin.url}/v1/embeddings", json={"model": EMBED, "input": "a"}, timeout=5)

    v0 = httpx.get(f"{standin.url}/api/v0/models", timeout=5).json()["data"]
    native = httpx.get(f"{standin.url}/api/v1/models", timeout=5).json()["models"]

    loaded = [m for m in v0 if m["state"] == "loaded"]
    assert loaded and all(m["loaded_context_length"] <= m["max_context_length"] for m in loaded)
    embed = next(m for m in v0 if m["id"] == EMBED)
    assert embed["loaded_context_length"] == 2048
    assert next(m for m in v0 if m["id"] == ECHO)["loaded_context_length"] == 8192
    for model in native:
        for instance in model["loaded_instances"]:
            assert instance["config"]["context_length"] <= model["max_context_length"]


@pytest.mark.parametrize(("args", "jit"), [((), True), (("--no-jit",), False)])
def test_jit_loading_is_a_command_line_option(args: tuple[str, ...], jit: bool) -> None:
    with run_standin(*args) as process:
        assert process.configure()["jit_loading"] is jit
        assert (_chat(process, BIG).status_code == 200) is jit
