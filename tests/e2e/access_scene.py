"""The access matrix's scene on the real fleet: Alice's resources and Bob's, service tokens got the
way the services get theirs, and Alice's token with one defect at a time."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from jose import jwt

from chat_common.testing.fleet import FleetUser
from chat_common.tokens import b64url, sign_claims
from tests.e2e.conftest import Fleet
from tests.e2e.forged_tokens import Forger, alg_none, fresh_rsa_key, hs256_with_the_public_key

# The fleet's service clients (user-service's development defaults, which the e2e fleet keeps).
CLIENT_SECRETS = {
    "message-service": "dev-message-service-secret",
    "conversation-service": "dev-conversation-service-secret",
    "llm-service": "dev-llm-service-secret",
}
# Tokens user-service never signed, from her claims (the other defective ones it could have signed).
FORGERIES: dict[str, Forger] = {
    "alg_none": alg_none,
    "hs256_with_public_key": hs256_with_the_public_key,
    "other_rsa_key": fresh_rsa_key,
}


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


def service_token(fleet: Fleet, client_id: str, scopes: list[str] | None = None) -> str:
    """A service token the way the fleet gets one: client credentials at user-service."""
    form = {"grant_type": "client_credentials", "client_id": client_id}
    form |= {"client_secret": CLIENT_SECRETS[client_id], "scope": " ".join(scopes or [])}
    response = fleet.http.post(f"{fleet.users}/api/v1/auth/service-token", data=form)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def client_scopes(fleet: Fleet) -> dict[str, set[str]]:
    return {
        client: set(jwt.get_unverified_claims(service_token(fleet, client))["scopes"])
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


def _characters_with_avatars(
    fleet: Fleet, owner: FleetUser, *, private_name: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A private and a public character of hers, each with an avatar (a card PNG imported: its image
    becomes the avatar), so that every read of them answers her."""
    draft = fleet.character(owner, visibility="private", name="Open Mira")
    exported = fleet.http.get(
        f"{fleet.characters}/api/v1/characters/{draft['id']}/export",
        params={"format": "png"},
        headers=owner.headers,
    )
    assert exported.status_code == 200, exported.text
    imported = {}
    for visibility in ("private", "public"):
        response = fleet.http.post(
            f"{fleet.characters}/api/v1/characters/import",
            files={"file": ("card.png", exported.content, "image/png")},
            data={"visibility": visibility},
            headers=owner.headers,
        )
        assert response.status_code == 201, response.text
        imported[visibility] = response.json()
    renamed = fleet.http.patch(
        f"{fleet.characters}/api/v1/characters/{imported['private']['id']}",
        json={"name": private_name},
        headers=owner.headers,
    )
    assert renamed.status_code == 200, renamed.text
    return dict(renamed.json()), imported["public"]


def build_scene(fleet: Fleet) -> Scene:
    """Alice's resources, settled, and Bob's own few."""
    alice, bob = fleet.register("alice"), fleet.register("bob")
    http = fleet.http
    secrets = [f"{word} {uuid.uuid4().hex[:12]}" for word in ("Ada", "Mira", "Hello, captain")]
    persona = http.post(
        f"{fleet.users}/api/v1/users/me/personas", json={"name": secrets[0]}, headers=alice.headers
    ).json()
    private, public = _characters_with_avatars(fleet, alice, private_name=secrets[1])
    conversation = fleet.conversation(alice, private["id"])
    exchange = fleet.send(alice, conversation["id"], secrets[2])
    session = http.post(
        f"{fleet.conversations}/api/v1/conversations/{conversation['id']}/sessions", headers=alice.headers
    ).json()
    # Ended, so its duration stops growing and her view of it stays still.
    ended = http.post(f"{fleet.conversations}/api/v1/sessions/{session['id']}/end", headers=alice.headers)
    assert ended.status_code == 200, ended.text
    # A reservation of hers, made and released by llm-service's client: her balance is as before.
    credits = service_token(fleet, "llm-service", ["credits:write"])
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


def defective_tokens(fleet: Fleet, user: FleetUser) -> dict[str, str | None]:
    """The user's token with one defect each (`missing`: none at all); the ones signed with
    user-service's own key differ from a token it issues only in the one claim named, and `control`,
    signed the same way with no claim changed, is one it would accept."""
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


def unknown_ids(scene: Scene) -> dict[str, str]:
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
