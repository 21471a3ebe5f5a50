"""Who may do what, across the fleet: a user's token travels from service to service (a private
character stays its owner's all the way down), and only tokens user-service signed are accepted."""

from __future__ import annotations

import httpx
import pytest
from jose import jwt

from chat_common.testing.fleet import FleetUser
from tests.e2e.conftest import INITIAL_CREDITS, Fleet
from tests.e2e.forged_tokens import Forger, alg_none, fresh_rsa_key, hs256_with_the_public_key

# An endpoint of each service that needs a user's token and answers 200 to a genuine one.
PROTECTED = {
    "user-service": "/api/v1/users/me",
    "character-service": "/api/v1/characters/mine",
    "conversation-service": "/api/v1/conversations",
    "message-service": "/api/v1/analytics/me",
    "llm-service": "/api/v1/models",
}


def _not_found(response: httpx.Response) -> bool:
    return response.status_code == 404 and "not_found" in response.json()["error"]["code"]


def test_a_private_characters_conversation_works_for_its_owner_and_is_404_for_others(fleet: Fleet) -> None:
    alice, bob = fleet.register("alice"), fleet.register("bob")
    character = fleet.character(alice, visibility="private")
    http = fleet.http

    character_url = f"{fleet.characters}/api/v1/characters/{character['id']}"
    assert http.get(character_url, headers=alice.headers).status_code == 200
    assert _not_found(http.get(character_url, headers=bob.headers))

    start = {"character_id": character["id"]}
    conversations_url = f"{fleet.conversations}/api/v1/conversations"
    assert _not_found(http.post(conversations_url, json=start, headers=bob.headers))
    started = http.post(conversations_url, json=start, headers=alice.headers)
    assert started.status_code == 201, started.text
    conversation_id = started.json()["id"]
    assert _not_found(http.get(f"{conversations_url}/{conversation_id}", headers=bob.headers))

    messages_url = f"{fleet.messages}/api/v1/conversations/{conversation_id}/messages"
    sent = http.post(messages_url, json={"content": "Hello, captain"}, headers=alice.headers)
    assert sent.status_code == 201, sent.text
    assert _not_found(http.post(messages_url, json={"content": "Let me in"}, headers=bob.headers))
    assert _not_found(http.get(messages_url, headers=bob.headers))
    reply_id = sent.json()["reply"]["id"]
    assert _not_found(
        http.post(f"{fleet.messages}/api/v1/messages/{reply_id}/regenerate", headers=bob.headers)
    )

    listed = http.get(messages_url, headers=alice.headers)
    assert listed.status_code == 200
    greeting = character["greeting"].replace("{{user}}", started.json()["persona"]["name"])
    assert [m["content"] for m in listed.json()["items"]][:2] == [greeting, "Hello, captain"]
    assert len(listed.json()["items"]) == 3  # bob's attempts stored nothing
    assert http.get(conversations_url, headers=bob.headers).json()["total"] == 0
    assert fleet.balance(bob) == INITIAL_CREDITS  # and cost him nothing


@pytest.fixture(scope="module")
def carol(fleet: Fleet) -> FleetUser:
    return fleet.register("carol")


@pytest.mark.parametrize("forge", [fresh_rsa_key, hs256_with_the_public_key, alg_none])
@pytest.mark.parametrize("service", list(PROTECTED))
def test_a_token_not_signed_by_user_service_is_401_everywhere(
    fleet: Fleet, carol: FleetUser, service: str, forge: Forger
) -> None:
    kid = jwt.get_unverified_header(carol.token)["kid"]
    claims = jwt.get_unverified_claims(carol.token)  # her real id, issuer, audience, expiry
    jwks = fleet.http.get(f"{fleet.users}/.well-known/jwks.json").json()
    [public_jwk] = [key for key in jwks["keys"] if key["kid"] == kid]
    forged = forge({**claims, "jti": claims["jti"] + "x"}, kid, public_jwk)
    url = fleet.urls[service] + PROTECTED[service]

    genuine = fleet.http.get(url, headers=carol.headers)
    refused = fleet.http.get(url, headers={"Authorization": f"Bearer {forged}"})

    assert genuine.status_code == 200, genuine.text
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["code"] in {"invalid_token", "unauthorized"}
    assert refused.headers["www-authenticate"].startswith("Bearer")
