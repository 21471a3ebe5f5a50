"""The access matrix, generated from the five OpenAPI documents (`openapi_calls.py`), against the real
fleet (`access_scene.py` sets the scene): another user's ids, in a path, a body or a query, are 404
(403 where documented), reveal nothing of hers and change nothing; every secured operation refuses a
missing or defective token with 401; every operation for services refuses a user's token and a
service token without its scope, and takes one with it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.access_scene import (
    Scene,
    build_scene,
    client_scopes,
    defective_tokens,
    service_token,
    unknown_ids,
)
from tests.e2e.conftest import SERVICES, Fleet
from tests.e2e.openapi_calls import SAFE_METHODS, Operation, operations

# Path parameters naming what no user owns: their operations are in the token matrix, not the id one.
NOT_OWNED = {"model_id": "LM Studio's models are the fleet's, not a user's"}
DEFECTS = (
    "missing",
    "expired",
    "tampered",
    "alg_none",
    "hs256_with_public_key",
    "other_rsa_key",
    "wrong_iss",
    "wrong_aud",
    "no_aud",
)


@pytest.fixture(scope="module")
def documented(fleet: Fleet) -> list[Operation]:
    found = []
    for service in SERVICES:
        response = fleet.http.get(f"{fleet.urls[service]}/openapi.json")
        assert response.status_code == 200, response.text
        found += operations(service, response.json())
    return found


def _variants(operation: Operation, scene: Scene) -> list[tuple[str, dict[str, str]]]:
    """Each combination of Alice's ids the operation's path takes, labelled."""
    combinations: list[tuple[str, dict[str, str]]] = [("", {})]
    for name in operation.path_params:
        combinations = [
            (f"{label}, {value_label}".lstrip(", "), {**values, name: value})
            for label, values in combinations
            for value_label, value in scene.ids[name]
        ]
    return combinations


def _error_shaped(response: httpx.Response) -> bool:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return bool(error.get("code")) and bool(error.get("message")) and "request_id" in error


def _without_request_id(response: httpx.Response) -> Any:
    """The body, an error's `request_id` (different on every call) left out."""
    if not response.headers.get("content-type", "").startswith("application/json"):
        return response.text
    body = response.json()
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body["error"].pop("request_id", None)
    return body


def _revealed(scene: Scene, response: httpx.Response, call: str) -> list[str]:
    return [
        f"{call}: {secret!r} in {response.text[:200]}" for secret in scene.secrets if secret in response.text
    ]


def _owners_view(fleet: Fleet, scene: Scene, reads: list[Operation]) -> dict[str, Any]:
    """Everything Alice can read through the id-taking reads, and both users' credits and ledgers."""
    view: dict[str, Any] = {}
    for operation in reads:
        for label, values in _variants(operation, scene):
            response = fleet.http.get(
                operation.url(fleet.urls[operation.service], values), headers=scene.alice.headers
            )
            view[f"{operation} [{label}]"] = (response.status_code, _without_request_id(response))
    for name, user in (("alice", scene.alice), ("bob", scene.bob)):
        for path in ("/api/v1/credits", "/api/v1/credits/transactions", "/api/v1/users/me/personas"):
            view[f"{name} {path}"] = fleet.http.get(fleet.users + path, headers=user.headers).json()
        view[f"{name} conversations"] = fleet.http.get(
            f"{fleet.conversations}/api/v1/conversations", headers=user.headers
        ).json()
    return view


def test_every_path_id_of_the_fleet_can_be_supplied(documented: list[Operation], scene: Scene) -> None:
    """A new operation taking an id the matrix has no value for fails here instead of going untested."""
    unknown = {
        f"{operation} {{{name}}}"
        for operation in documented
        for name in operation.path_params
        if name not in scene.ids
    }
    assert unknown == set()


@pytest.mark.parametrize("service", SERVICES)
def test_another_users_ids_are_404_everywhere_and_change_nothing(
    fleet: Fleet, documented: list[Operation], scene: Scene, service: str
) -> None:
    """Bob calls every operation taking an id with Alice's ids and a valid body: 404, or 403 where
    the operation documents it (one he may see but not change, or one for admins or services); reads
    of her public character may answer; no answer holds anything only she may read. Her resources,
    and both users' credits, are as before."""
    owned = [op for op in documented if op.path_params and not set(op.path_params) <= NOT_OWNED.keys()]
    owner_reads = [op for op in owned if op.method in SAFE_METHODS and not op.scopes]
    before = _owners_view(fleet, scene, owner_reads)
    missing = [call for call, answer in before.items() if isinstance(answer, tuple) and answer[0] == 404]
    assert missing == [], "Alice cannot read her own: a 404 to Bob would prove nothing"
    calls = 0
    wrong, revealed = [], []
    for operation in (op for op in owned if op.service == service):
        for label, values in _variants(operation, scene):
            url = operation.url(fleet.urls[service], values)
            response = fleet.http.request(
                operation.method, url, headers=scene.bob.headers, **operation.body()
            )
            calls += 1
            allowed = {404} | ({403} if operation.documents(403) else set())
            if operation.method in SAFE_METHODS and label.endswith("public character"):
                allowed |= {200}
            if response.status_code not in allowed or (
                response.status_code >= 400 and not _error_shaped(response)
            ):
                wrong.append(f"{operation} [{label}]: {response.status_code} {response.text[:200]}")
            revealed += _revealed(scene, response, f"{operation} [{label}]")

    after = _owners_view(fleet, scene, owner_reads)
    assert calls > 0 or service == "llm-service"
    assert wrong == []
    assert revealed == []
    assert {k: v for k, v in after.items() if before.get(k) != v} == {}


@pytest.fixture(scope="module")
def scene(fleet: Fleet) -> Scene:
    return build_scene(fleet)


@pytest.fixture(scope="module")
def defective(fleet: Fleet, scene: Scene) -> dict[str, str | None]:
    return defective_tokens(fleet, scene.alice)


@pytest.mark.parametrize("defect", DEFECTS)
@pytest.mark.parametrize("service", SERVICES)
def test_every_secured_operation_refuses_a_missing_or_defective_token_with_401(
    fleet: Fleet,
    documented: list[Operation],
    scene: Scene,
    defective: dict[str, str | None],
    service: str,
    defect: str,
) -> None:
    token = defective[defect]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    secured = [op for op in documented if op.service == service and op.secured]
    wrong = []
    for operation in secured:
        url = operation.url(fleet.urls[service], scene.first_ids())
        response = fleet.http.request(operation.method, url, headers=headers, **operation.body())
        if (
            response.status_code != 401
            or not _error_shaped(response)
            or not response.headers.get("www-authenticate", "").startswith("Bearer")
        ):
            wrong.append(f"{operation}: {response.status_code} {response.text[:200]}")
    assert secured
    assert wrong == []


@pytest.mark.parametrize("service", SERVICES)
def test_the_defective_tokens_differ_from_an_accepted_one_only_by_their_defect(
    fleet: Fleet, documented: list[Operation], scene: Scene, defective: dict[str, str | None], service: str
) -> None:
    """The same construction without a defect (her claims, a fresh `jti`, user-service's key) is
    authenticated by every secured read for users (an admin's may still be 403): the 401s above are
    the defects'."""
    headers = {"Authorization": f"Bearer {defective['control']}"}
    reads = [op for op in documented if op.service == service and op.secured and op.method in SAFE_METHODS]
    refused = []
    for operation in (op for op in reads if not op.scopes):
        response = fleet.http.get(operation.url(fleet.urls[service], scene.first_ids()), headers=headers)
        if response.status_code == 401:
            refused.append(f"{operation}: {response.status_code} {response.text[:200]}")
    assert reads
    assert refused == []


@pytest.mark.parametrize("service", SERVICES)
def test_public_operations_do_not_ask_for_a_token(
    fleet: Fleet, documented: list[Operation], scene: Scene, service: str
) -> None:
    """An operation documented without a security requirement is not refused for lacking a token (a
    credential it takes in its body may still be refused)."""
    public = [op for op in documented if op.service == service and not op.secured]
    asked = []
    for operation in public:
        url = operation.url(fleet.urls[service], scene.first_ids())
        response = fleet.http.request(operation.method, url, **operation.body())
        if response.status_code == 401 and response.json()["error"]["code"] == "unauthorized":
            asked.append(f"{operation}: {response.status_code} {response.text[:200]}")
    assert {"GET /health", "GET /ready"} <= {f"{op.method} {op.path}" for op in public}
    assert asked == []


def test_every_internal_path_is_documented_for_services_with_its_scope(documented: list[Operation]) -> None:
    internal = [op for op in documented if "/internal/" in op.path]
    assert internal
    assert [str(op) for op in internal if not op.scopes or not op.documents(403)] == []


@pytest.mark.parametrize("service", SERVICES)
def test_operations_for_services_take_only_a_service_token_with_their_scope(
    fleet: Fleet, documented: list[Operation], scene: Scene, service: str
) -> None:
    """A user's token and a service token with every other scope of its client are 403; the same
    client's token with the scope is taken (its reads of Alice's ids answer 200)."""
    scoped = [op for op in documented if op.service == service and op.scopes]
    scopes = client_scopes(fleet)
    wrong = []
    for operation in scoped:
        [needed] = operation.scopes
        # The least privileged client with the scope (llm-service's made Alice's reservation).
        holder = min((client for client in scopes if needed in scopes[client]), key=lambda c: len(scopes[c]))
        others = sorted(max(scopes.values(), key=len) - {needed})
        tokens = {
            "user": (scene.alice.token, {403}),
            "without the scope": (service_token(fleet, "message-service", others), {403}),
            "with the scope": (service_token(fleet, holder, [needed]), None),
        }
        # Alice's ids for reads; for writes ids nobody has, so her conversation counts nothing twice.
        values = scene.first_ids() if operation.method in SAFE_METHODS else unknown_ids(scene)
        for label, (token, expected) in tokens.items():
            url = operation.url(fleet.urls[service], values)
            headers = {"Authorization": f"Bearer {token}"}
            response = fleet.http.request(operation.method, url, headers=headers, **operation.body())
            refused = response.status_code in (401, 403)
            if (expected is None and refused) or (
                expected is not None and response.status_code not in expected
            ):
                wrong.append(f"{operation} [{label}]: {response.status_code} {response.text[:200]}")
            if operation.method in SAFE_METHODS and expected is None and response.status_code != 200:
                wrong.append(f"{operation} [{label}]: {response.status_code}, not 200")
    assert scoped or service in ("message-service", "llm-service")
    assert wrong == []


# Fields of bodies and queries that name another resource, by the path parameter naming its kind.
ID_FIELDS = {"parent_id": "message_id", "owner_id": "user_id", "before": "message_id", "after": "message_id"}


def _id_fields(operation: Operation) -> list[tuple[str, str]]:
    """(where, name) of each body property and query parameter of the operation naming an id."""
    return [
        (where, name)
        for where, names in (("query", operation.query_fields), ("body", operation.body_fields))
        for name in names
        if name.endswith("_id") or name in ID_FIELDS
    ]


def test_another_users_ids_in_a_body_or_query_reach_nothing_of_hers(
    fleet: Fleet, documented: list[Operation], scene: Scene
) -> None:
    """Bob names Alice's things in the body or query of an operation on his own (a conversation with
    her private character or persona, a reply under her message, a filter by her account): 404 (403
    where documented) when it changes something, and no answer holds anything only she may read. Her
    public character may be used, as anyone's."""
    for_users = [op for op in documented if op.secured and not op.scopes]
    wrong, revealed = [], []
    calls = 0
    for operation in for_users:
        fields = _id_fields(operation)
        # His own ids in the body's other id fields, so only the one of hers can make it fail.
        his = {
            name: scene.bobs_ids[ID_FIELDS.get(name, name)]
            for where, name in fields
            if where == "body" and ID_FIELDS.get(name, name) in scene.bobs_ids
        }
        for where, name in fields:
            kind = ID_FIELDS.get(name, name)
            assert kind in scene.ids, f"{operation}: no value of hers for the {where} field {name!r}"
            for label, value in scene.ids[kind]:
                url = operation.url(
                    fleet.urls[operation.service],
                    scene.bobs_ids,
                    query={name: value} if where == "query" else None,
                )
                body = operation.body(his | {name: value} if where == "body" else his)
                response = fleet.http.request(operation.method, url, headers=scene.bob.headers, **body)
                calls += 1
                call = f"{operation} {where} {name}=[{label}]"
                allowed = {404} | ({403} if operation.documents(403) else set())
                if operation.method in SAFE_METHODS or label.endswith("public character"):
                    allowed |= {200, 201}
                if response.status_code not in allowed:
                    wrong.append(f"{call}: {response.status_code} {response.text[:200]}")
                revealed += _revealed(scene, response, call)
    assert calls > 0
    assert wrong == []
    assert revealed == []
