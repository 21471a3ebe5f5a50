"""Every service's OpenAPI document, as a newcomer reads it at `/docs`: served, listing only routes
that answer, listing every route the app has, and saying how each operation fails."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import SERVICES, Fleet

ROOT = Path(__file__).resolve().parents[2]
# Served by FastAPI for the document itself, and Prometheus's text format: not operations of the API.
NOT_OPERATIONS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/metrics"}
# Each service's routes as its router resolves them (FastAPI >= 0.16x includes routers lazily:
# `app.routes` then holds the included routers, not their routes). One process builds the five apps in
# turn, each from its own directory (each service's package is called `app`); the libraries they share
# are imported once.
ROUTES_SCRIPT = """
import importlib, json, os, sys
try:
    from fastapi.routing import iter_route_contexts
except ImportError:
    def iter_route_contexts(routes):
        return routes
found = {}
for directory in sys.argv[1:]:
    os.chdir(directory)
    sys.path.insert(0, directory)
    for name in [m for m in sys.modules if m == "app" or m.startswith("app.")]:
        del sys.modules[name]
    app = importlib.import_module("app.main").create_app()
    found[directory] = [
        [r.path, sorted(r.methods)] for r in iter_route_contexts(app.routes) if getattr(r, "methods", None)
    ]
    sys.path.remove(directory)
print(json.dumps(found))
"""
NOT_INHERITED = ("DATABASE_URL", "REDIS_URL", "MONGODB_URL", "JWKS_URL", "ENVIRONMENT")


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    ]


@pytest.fixture(scope="module")
def documents(fleet: Fleet) -> dict[str, dict[str, Any]]:
    found = {}
    for service in SERVICES:
        response = fleet.http.get(f"{fleet.urls[service]}/openapi.json")
        assert response.status_code == 200, (service, response.text)
        found[service] = response.json()
    return found


@pytest.fixture(scope="module")
def app_routes() -> dict[str, set[tuple[str, str]]]:
    """Each service's routes, read from its app."""
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED} | {"ENVIRONMENT": "test"}
    directories = [str(ROOT / service) for service in SERVICES]
    done = subprocess.run(
        [sys.executable, "-c", ROUTES_SCRIPT, *directories],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        service: {
            (method, re.sub(r"\{(\w+):\w+\}", r"{\1}", path))  # `{model_id:path}` is `{model_id}` in OpenAPI
            for path, methods in found[directory]
            for method in methods
            if method != "HEAD" and path not in NOT_OPERATIONS
        }
        for service, directory in zip(SERVICES, directories, strict=True)
    }


@pytest.fixture(scope="module")
def path_values(fleet: Fleet) -> dict[str, str]:
    """A real id for every path parameter the fleet's routes have: a plausible request names things
    that exist."""
    owner = fleet.register("docs")
    character = fleet.character(owner, visibility="public")
    conversation = fleet.conversation(owner, character["id"])
    exchange = fleet.send(owner, conversation["id"], "Hello")
    persona = fleet.http.post(
        f"{fleet.users}/api/v1/users/me/personas", json={"name": "Docs"}, headers=owner.headers
    ).json()
    session = fleet.http.post(
        f"{fleet.conversations}/api/v1/conversations/{conversation['id']}/sessions", headers=owner.headers
    ).json()
    model = fleet.http.get(f"{fleet.llm}/api/v1/models", headers=owner.headers).json()["data"][0]
    return {
        "user_id": owner.id,
        "persona_id": persona["id"],
        "character_id": character["id"],
        "conversation_id": conversation["id"],
        "message_id": exchange["reply"]["id"],
        "session_id": session["id"],
        "reservation_id": f"reply:{exchange['reply']['id']}",
        "model_id": model["id"],
    }


@pytest.mark.parametrize("service", SERVICES)
def test_every_documented_operation_answers(
    fleet: Fleet, documents: dict[str, dict[str, Any]], path_values: dict[str, str], service: str
) -> None:
    """Called as a stranger would (no token, an empty JSON body), a documented operation may refuse
    (401, 422) but never be missing (404 from the router, 405)."""
    missing = {}
    for method, path, _ in _operations(documents[service]):
        url = fleet.urls[service] + path.format(**path_values)
        body = {"json": {}} if method in {"POST", "PUT", "PATCH"} else {}
        response = fleet.http.request(method, url, **body)
        if response.status_code in (404, 405):
            missing[f"{method} {path}"] = response.status_code
    assert missing == {}


@pytest.mark.parametrize("service", SERVICES)
def test_every_route_of_the_app_is_documented(
    documents: dict[str, dict[str, Any]], app_routes: dict[str, set[tuple[str, str]]], service: str
) -> None:
    documented = {(method, path) for method, path, _ in _operations(documents[service])}
    assert app_routes[service], "no routes read from the app"
    assert app_routes[service] - documented == set()
    assert documented - app_routes[service] == set()


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_documents_its_client_errors(
    documents: dict[str, dict[str, Any]], service: str
) -> None:
    undocumented = [
        f"{method} {path}"
        for method, path, operation in _operations(documents[service])
        if not any(str(status).startswith("4") for status in operation.get("responses", {}))
    ]
    assert undocumented == []


def _resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """`node`, or what its `$ref` (`#/components/<kind>/<name>`) points at."""
    while "$ref" in node:
        _, _, kind, name = node["$ref"].split("/")
        node = document["components"][kind][name]
    return node


def test_every_error_response_documents_the_error_envelope(documents: dict[str, dict[str, Any]]) -> None:
    without_schema = []
    for service, document in documents.items():
        for method, path, operation in _operations(document):
            for status, response in operation.get("responses", {}).items():
                if str(status)[0] not in "45":
                    continue
                media = _resolve(document, response).get("content", {}).get("application/json", {})
                body = _resolve(document, media.get("schema", {}))
                envelope = _resolve(document, body.get("properties", {}).get("error", {}))
                if not {"code", "message"} <= envelope.get("properties", {}).keys():
                    without_schema.append(f"{service}: {method} {path} {status}")
    assert without_schema == []
