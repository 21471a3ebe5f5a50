"""The access matrix, generated from the five OpenAPI documents (`openapi_calls.py`), against the real
fleet: another user's ids are 404 (403 where documented) on every operation that takes one and nothing
of the owner's changes; every secured operation refuses a missing or defective token with 401; every
operation for services refuses a user's token and a service token without its scope, and takes one
with it."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from jose import jwt

from chat_common.testing.fleet import FleetUser
from chat_common.tokens import b64url, sign_claims
from tests.e2e.conftest import SERVICES, Fleet
from tests.e2e.forged_tokens import Forger, alg_none, fresh_rsa_key, hs256_with_the_public_key
from tests.e2e.openapi_calls import SAFE_METHODS, Operation, operations

# The fleet's service clients (user-service's development defaults, which the e2e fleet keeps).
CLIENT_SECRETS = {
    "message-service": "dev-message-service-secret",
    "conversation-service": "dev-conversation-service-secret",
    "llm-service": "dev-llm-service-secret",
}
# Path parameters naming what no user owns: their operations are in the token matrix, not the id one.
NOT_OWNED = {"model_id": "LM Studio's models are the fleet's, not a user's"}
# Tokens user-service never signed (the rest of DEFECTS it signed, but for their one defect).
FORGERIES: dict[str, Forger] = {
    "alg_none": alg_none,
    "hs256_with_public_key": hs256_with_the_public_key,
    "other_rsa_key": fresh_rsa_key,
}
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


@dataclass
class Scene:
    """Alice owns one of each resource; Bob owns nothing of hers. `ids` holds, per path parameter, her
    ids as (label, value): a message is her user message and the reply; a character private and
    public."""

    alice: FleetUser
    bob: FleetUser
    ids: dict[str, list[tuple[str, str]]]
    secrets: list[str]  # what only she may read: her private character's name, her persona's, her words
    bobs_ids: dict[str, str]

    def first_ids(self) -> dict[str, str]:
        return {name: values[0][1] for name, values in self.ids.items()}


@pytest.fixture(scope="module")
def documented(fleet: Fleet) -> list[Operation]:
    found = []
    for service in SERVICES:
        response = fleet.http.get(f"{fleet.urls[service]}/openapi.json")
        assert response.status_code == 200, response.text
        found += operations(service, response.json())
    return found


def _service_token(fleet: Fleet, client_id: str, scopes: list[str] | None = None) -> str:
    """A service token the way the fleet gets one: client credentials at user-service."""
    form = {"grant_type": "client_credentials", "client_id": client_id}
    form |= {"client_secret": CLIENT_SECRETS[client_id], "scope": " ".join(scopes or [])}
    response = fleet.http.post(f"{fleet.users}/api/v1/auth/service-token", data=form)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _client_scopes(fleet: Fleet) -> dict[str, set[str]]:
    return {
        client: set(jwt.get_unverified_claims(_service_token(fleet, client))["scopes"])
        for client in CLIENT_SECRETS
    }


def _wait_settled(fleet: Fleet, owner: FleetUser, exchange: dict[str, Any], character_id: str) -> None:
    """Until the reply is done and the conversation and the character count both messages (their
    counters follow in batches): from then on the owner's view stays still."""
    reply_url = f"{fleet.messages}/api/v1/messages/{exchange['reply']['id']}"
    conversation_url = f"{fleet.conversations}/api/v1/conversations/{exchange['reply']['conversation_id']}"
    character_url = f"{fleet.characters}/api/v1/characters/{character_id}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        reply = fleet.http.get(reply_url, headers=owner.headers).json()
        conversation = fleet.http.get(conversation_url, headers=owner.headers).json()
        character = fleet.http.get(character_url, headers=owner.headers).json()
        if (reply["status"], conversation["message_count"], character["message_count"]) == (
            "completed",
            2,
            2,
        ):
            return
        time.sleep(0.2)
    raise AssertionError(f"not settled: {reply}, {conversation}, {character}")


@pytest.fixture(scope="module")
def scene(fleet: Fleet) -> Scene:
    alice, bob = fleet.register("alice"), fleet.register("bob")
    http = fleet.http
    secrets = [f"{word} {uuid.uuid4().hex[:12]}" for word in ("Ada", "Mira", "Hello, captain")]
    persona = http.post(
        f"{fleet.users}/api/v1/users/me/personas", json={"name": secrets[0]}, headers=alice.headers
    ).json()
    private = fleet.character(alice, visibility="private", name=secrets[1])
    public = fleet.character(alice, visibility="public", name="Open Mira")
    conversation = fleet.conversation(alice, private["id"])
    exchange = fleet.send(alice, conversation["id"], secrets[2])
    session = http.post(
        f"{fleet.conversations}/api/v1/conversations/{conversation['id']}/sessions", headers=alice.headers
    ).json()
    # Ended, so its duration stops growing and her view of it stays still.
    ended = http.post(f"{fleet.conversations}/api/v1/sessions/{session['id']}/end", headers=alice.headers)
    assert ended.status_code == 200, ended.text
    # A reservation of hers, made and released by llm-service's client: her balance is as before.
    credits = _service_token(fleet, "llm-service", ["credits:write"])
    reservation = http.post(
        f"{fleet.users}/api/v1/credits/reservations",
        json={"user_id": alice.id, "amount": 1, "idempotency_key": uuid.uuid4().hex},
        headers={"Authorization": f"Bearer {credits}"},
    ).json()
    released = http.post(
        f"{fleet.users}/api/v1/credits/reservations/{reservation['id']}/release",
        headers={"Authorization": f"Bearer {credits}"},
    )
    assert released.status_code == 200, released.text
    model = http.get(f"{fleet.llm}/api/v1/models", headers=alice.headers).json()["data"][0]
    _wait_settled(fleet, alice, exchange, private["id"])
    ids = {
        "user_id": [("her account", alice.id)],
        "persona_id": [("her persona", persona["id"])],
        "character_id": [("her private character", private["id"]), ("her public character", public["id"])],
        "conversation_id": [("her conversation", conversation["id"])],
        "session_id": [("her session", session["id"])],
        "message_id": [
            ("her message", exchange["user_message"]["id"]),
            ("the reply to her", exchange["reply"]["id"]),
        ],
        "reservation_id": [("a reservation of hers", reservation["id"])],
        "model_id": [("a model", model["id"])],
    }
    bobs_character = fleet.character(bob, visibility="private", name="Bob's own")
    bobs_ids = {
        "user_id": bob.id,
        "persona_id": http.post(
            f"{fleet.users}/api/v1/users/me/personas", json={"name": "Bo"}, headers=bob.headers
        ).json()["id"],
        "character_id": bobs_character["id"],
        "conversation_id": fleet.conversation(bob, bobs_character["id"])["id"],
    }
    return Scene(alice, bob, ids, secrets, bobs_ids)


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


def _defective_tokens(fleet: Fleet, user: FleetUser) -> dict[str, str | None]:
    """The user's token with one defect each; the ones signed with user-service's own key differ from
    a token it issues only in the one claim named."""
    kid = jwt.get_unverified_header(user.token)["kid"]
    claims = jwt.get_unverified_claims(user.token)
    jwks = fleet.http.get(f"{fleet.users}/.well-known/jwks.json").json()
    [public_jwk] = [key for key in jwks["keys"] if key["kid"] == kid]
    key = fleet.signing_key_pem
    now = int(time.time())

    def signed(**changes: Any) -> str:
        changed = {**claims, "jti": uuid.uuid4().hex, **changes}
        return sign_claims({k: v for k, v in changed.items() if v is not None}, key, kid)

    header, _, signature = user.token.split(".")
    tampered_claims = b64url(json.dumps({**claims, "role": "admin"}).encode())
    return {
        "missing": None,
        "expired": signed(iat=now - 3600, exp=now - 60),
        "tampered": f"{header}.{tampered_claims}.{signature}",
        **{
            defect: forge({**claims, "jti": uuid.uuid4().hex}, kid, public_jwk)
            for defect, forge in FORGERIES.items()
        },
        "wrong_iss": signed(iss="https://issuer.example.com"),
        "wrong_aud": signed(aud="another-api"),
        "no_aud": signed(aud=None),
        "control": signed(),
    }


@pytest.fixture(scope="module")
def defective(fleet: Fleet, scene: Scene) -> dict[str, str | None]:
    return _defective_tokens(fleet, scene.alice)


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
    scopes = _client_scopes(fleet)
    wrong = []
    for operation in scoped:
        [needed] = operation.scopes
        # The least privileged client with the scope (llm-service's made Alice's reservation).
        holder = min((client for client in scopes if needed in scopes[client]), key=lambda c: len(scopes[c]))
        others = sorted(max(scopes.values(), key=len) - {needed})
        tokens = {
            "user": (scene.alice.token, {403}),
            "without the scope": (_service_token(fleet, "message-service", others), {403}),
            "with the scope": (_service_token(fleet, holder, [needed]), None),
        }
        # Alice's ids for reads; for writes ids nobody has, so her conversation counts nothing twice.
        values = scene.first_ids() if operation.method in SAFE_METHODS else _unknown_ids(scene)
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


def _unknown_ids(scene: Scene) -> dict[str, str]:
    """Ids in the format of Alice's that name nothing."""
    return {
        name: str(uuid.uuid4()) if _is_uuid(value) else uuid.uuid4().hex[:24]
        for name, value in scene.first_ids().items()
    }


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


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
