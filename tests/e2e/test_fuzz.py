"""Schema fuzzing: schemathesis drives every operation of each service's OpenAPI document with
generated valid and invalid input, as a normal user, over HTTP against the shared fleet.

Every response must be no 5xx, have a documented status code, content type and body schema, and every
error body must be the fleet's one error shape. Each operation gets a user of its own and the
resources its path ids name (so generated cases reach past 404 and a DELETE of one operation cannot
take another's data away), and real ids are drawn beside generated ones. The run is seeded and
derandomized (the same cases every time) and keeps no Hypothesis database.

`FUZZ_EXAMPLES` sets the examples per operation (a few in `make test`, many in `make fuzz`).
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import hypothesis.strategies as st
import pytest
import schemathesis
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from chat_common.testing.fleet import FleetUser
from tests.e2e.conftest import SERVICES, Fleet

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "3"))
SEED = int(os.environ.get("FUZZ_SEED", "20261127"))
# Hypothesis' caches (constants of the code, Unicode tables) in the system's temporary directory, not
# `.hypothesis/` in the repository: set on import, as schemathesis reads the code's constants before
# any fixture of this module runs. No example database is kept at all (`_config`).
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "character-chat-fuzz-hypothesis")
# What every response must satisfy, besides `error_shape` and `method_not_allowed` (below).
# Left out: `positive_data_acceptance`, which expects every schema-valid request to succeed though
# some rules are beyond a JSON schema (password strength, If-Match versions, `mine=true` with another
# `owner_id`, `before` with `after`), and `ignored_auth`: tokens are test_access_matrix.py's subject.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@dataclass
class Scene:
    """A fresh user and resources of theirs, for one operation."""

    user: FleetUser
    ids: dict[str, str] = field(default_factory=dict)


class Scenes:
    """One scene per operation of one service, made the first time the operation needs it."""

    def __init__(self, fleet: Fleet, service: str) -> None:
        self.fleet = fleet
        self.service = service
        self._scenes: dict[str, Scene] = {}
        self._lock = threading.Lock()

    def for_label(self, label: str) -> Scene:
        with self._lock:
            if label not in self._scenes:
                self._scenes[label] = self._make(label)
            return self._scenes[label]

    def _make(self, label: str) -> Scene:
        fleet = self.fleet
        user = fleet.register("fuzz")
        scene = Scene(user)
        ids = scene.ids
        if self.service == "user-service":
            ids["user_id"] = user.id
            persona = fleet.http.post(
                f"{fleet.users}/api/v1/users/me/personas",
                json={"name": "Wren", "description": "A traveller"},
                headers=user.headers,
            )
            assert persona.status_code == 201, persona.text
            ids["persona_id"] = persona.json()["id"]
        elif self.service == "character-service":
            ids["character_id"] = fleet.character(user)["id"]
        elif self.service == "conversation-service":
            character = fleet.character(user)
            conversation = fleet.conversation(user, character["id"])
            ids["character_id"] = character["id"]
            ids["conversation_id"] = conversation["id"]
            session = fleet.http.post(
                f"{fleet.conversations}/api/v1/conversations/{conversation['id']}/sessions",
                headers=user.headers,
            )
            assert session.status_code in (200, 201), session.text
            ids["session_id"] = session.json()["id"]
        elif self.service == "message-service":
            character = fleet.character(user)
            conversation = fleet.conversation(user, character["id"])
            ids["character_id"] = character["id"]
            ids["conversation_id"] = conversation["id"]
            sent = fleet.send(user, conversation["id"], "Hello, captain")
            # the reply, but the user message for the operation that takes only those (an edit)
            edited = label == "PATCH /api/v1/messages/{message_id}"
            ids["message_id"] = sent["user_message" if edited else "reply"]["id"]
        elif self.service == "llm-service":
            models = fleet.http.get(f"{fleet.llm}/api/v1/models", headers=user.headers)
            assert models.status_code == 200, models.text
            ids["model_id"] = models.json()["data"][0]["id"]
        return scene


def error_shape(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every 4xx and 5xx body is the fleet's error envelope (chat_common.errors.ErrorResponse)."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), f"an error body as {content_type!r}"
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, f"not the error envelope: {body!r}"
    error = body["error"]
    assert isinstance(error, dict), f"`error` is not an object: {body!r}"
    assert set(error) == {"code", "message", "details", "request_id"}, f"error fields: {sorted(error)}"
    assert isinstance(error["code"], str) and error["code"], f"error code: {error['code']!r}"
    assert isinstance(error["message"], str) and error["message"], f"error message: {error['message']!r}"
    assert error["request_id"] == response.headers.get("x-request-id", [None])[0], "request id"
    return True


def _templates_matching(case: Case, response: Response) -> list[dict[str, Any]]:
    """The path items of the document's other paths that the request's path also matches: a
    parameter can hold words (`/characters/mine` is also `/characters/{character_id}`) and slashes
    (llm-service's model ids: `/models/a/load` is also `/models/{model_id}`)."""
    path = urlsplit(str(response.request.url)).path
    found = []
    for template, item in case.operation.schema.raw_schema["paths"].items():
        pattern = re.sub(r"\\\{[^}]*\\\}", ".+", re.escape(template))
        if template != case.operation.path and re.fullmatch(pattern, path):
            found.append(item)
    return found


def method_not_allowed(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """schemathesis' 405 checks, for a method no operation of the path answers: an undocumented
    method is 405 and `Allow` lists the path's methods. Where another operation's path matches too,
    the method may be that operation's, and `Allow` rightly lists the methods of both."""
    others = _templates_matching(case, response)
    method = str(response.request.method).lower()
    if not any(method in item for item in others):
        unsupported_method(ctx, response, case)
    if not others:
        allow_header_conformance(ctx, response, case)
    return True


def _config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {"max-examples": FUZZ_EXAMPLES, "deterministic": True, "database": "none"},
            "phases": {"stateful": {"enabled": False}},
            "suppress-health-check": ["too_slow", "filter_too_much"],
            "request-timeout": 60,
        }
    )


def _real_ids(scenes: Scenes) -> Callable[[Any, Case], Any]:
    """A hook: a positive case is sent as generated, or with the real ids of the operation's scene in
    its path and in the body fields of the same names (a new conversation's `character_id`)."""

    def flatmap_case(context: Any, case: Case) -> Any:
        if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
            return st.just(case)
        names = [p.name for p in case.operation.path_parameters]
        fields = [key for key in case.body if key.endswith("_id")] if isinstance(case.body, dict) else []
        if not names and not fields:
            return st.just(case)
        ids = scenes.for_label(case.operation.label).ids
        if not all(name in ids for name in names):
            return st.just(case)
        path = {**(case.path_parameters or {}), **{name: ids[name] for name in names}}
        body = {key: ids[key] for key in fields if key in ids}

        def sent(with_real_ids: bool) -> Case:
            if with_real_ids:
                case.path_parameters = path
                if body:
                    case.body = {**case.body, **body}
            return case

        return st.booleans().map(sent)

    return flatmap_case


@pytest.fixture(params=SERVICES)
def scenes(request: pytest.FixtureRequest, fleet: Fleet) -> Scenes:
    return Scenes(fleet, request.param)


@pytest.fixture
def fuzz_schema(scenes: Scenes) -> Any:
    url = f"{scenes.fleet.urls[scenes.service]}/openapi.json"
    loaded = schemathesis.openapi.from_url(url, config=_config())
    loaded.hook("flatmap_case")(_real_ids(scenes))
    return loaded


schema = schemathesis.pytest.from_fixture("fuzz_schema")


@schema.parametrize()
def test_every_operation_holds_its_documented_contract(case: Case, scenes: Scenes) -> None:
    scene = scenes.for_label(case.operation.label)
    case.call_and_validate(headers=scene.user.headers, checks=[*CHECKS, method_not_allowed, error_shape])
