"""Access tokens: claims, JWKS, and every forged or misused token rejected with 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from jose import jwt

from app.config import Settings
from chat_common.auth import JWKSKeySource, TokenVerifier
from chat_common.errors import UnauthorizedError
from chat_common.tokens import b64url, build_claims, sign_claims
from tests.conftest import AppUser, UserFactory, assert_error_shape


def _claims(user: AppUser, settings: Settings, **overrides: Any) -> dict[str, Any]:
    """What user-service issues to `user` (the shared builder), with some claims replaced."""
    claims = build_claims(
        sub=user.id,
        role="user",
        scopes=[],
        token_type="access",
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=600,
    )
    return {**claims, **overrides}


def _sign(claims: dict[str, Any], settings: Settings, app: FastAPI) -> str:
    assert settings.jwt_private_key is not None
    return sign_claims(claims, settings.jwt_private_key.get_secret_value(), app.state.auth.signer.kid)


async def _me_status(client: AsyncClient, token: str) -> tuple[int, dict[str, Any]]:
    response = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    return response.status_code, response.json()


async def test_access_token_carries_the_design_claims(
    client: AsyncClient, make_user: UserFactory, settings: Settings
) -> None:
    user = await make_user()
    claims = jwt.get_unverified_claims(user.access_token)
    header = jwt.get_unverified_header(user.access_token)
    assert header["alg"] == "RS256" and header["kid"]
    assert claims["sub"] == user.id and claims["role"] == "user" and claims["type"] == "access"
    assert claims["iss"] == settings.jwt_issuer and claims["aud"] == settings.jwt_audience
    assert claims["exp"] - claims["iat"] == 30 * 60
    assert set(claims) >= {"scopes", "jti"}


async def test_jwks_publishes_the_signing_key(client: AsyncClient, make_user: UserFactory) -> None:
    user = await make_user()
    jwks = (await client.get("/.well-known/jwks.json")).json()
    kid = jwt.get_unverified_header(user.access_token)["kid"]
    (key,) = [k for k in jwks["keys"] if k["kid"] == kid]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and "d" not in key
    assert (
        jwt.decode(user.access_token, key, algorithms=["RS256"], audience="character-chat")["sub"] == user.id
    )


async def test_jwks_verifier_of_other_services_accepts_real_tokens(
    app: FastAPI, client: AsyncClient, make_user: UserFactory, settings: Settings
) -> None:
    """chat_common's JWKS verifier (used by every other service) over user-service's endpoint."""
    user = await make_user()
    source = JWKSKeySource("http://testserver/.well-known/jwks.json", transport=ASGITransport(app=app))
    verifier = TokenVerifier(source, issuer=settings.jwt_issuer, audience=settings.jwt_audience)
    principal = await verifier.verify(user.access_token)
    with pytest.raises(UnauthorizedError):
        await verifier.verify(user.access_token[:-4] + "AAAA")
    assert principal.user_id == user.id and not principal.is_service


async def test_expired_token_is_401(
    client: AsyncClient, make_user: UserFactory, settings: Settings, app: FastAPI
) -> None:
    user = await make_user()
    token = _sign(
        _claims(user, settings, exp=int(time.time()) - 10, iat=int(time.time()) - 100), settings, app
    )
    status, body = await _me_status(client, token)
    assert status == 401
    assert_error_shape(body, "token_expired")


async def test_tampered_payload_is_401(client: AsyncClient, make_user: UserFactory) -> None:
    user = await make_user()
    header, payload, signature = user.access_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["role"] = "admin"
    forged = f"{header}.{b64url(json.dumps(claims).encode())}.{signature}"
    status, body = await _me_status(client, forged)
    assert status == 401
    assert_error_shape(body, "invalid_token")


async def test_alg_none_is_401(client: AsyncClient, make_user: UserFactory, settings: Settings) -> None:
    user = await make_user()
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(_claims(user, settings)).encode())
    status, body = await _me_status(client, f"{header}.{payload}.")
    assert status == 401
    assert_error_shape(body, "invalid_token")


async def test_hs256_signed_with_the_public_key_is_401(
    client: AsyncClient, make_user: UserFactory, settings: Settings, app: FastAPI
) -> None:
    """The classic key-confusion attack: HMAC keyed with the published RSA public key."""
    user = await make_user()
    assert settings.jwt_private_key is not None
    private = serialization.load_pem_private_key(settings.jwt_private_key.get_secret_value().encode(), None)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": app.state.auth.signer.kid}).encode())
    payload = b64url(json.dumps(_claims(user, settings)).encode())
    signature = b64url(hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    status, body = await _me_status(client, f"{header}.{payload}.{signature}")
    assert status == 401
    assert_error_shape(body, "invalid_token")


@pytest.mark.parametrize("claim", [{"iss": "someone-else"}, {"aud": "another-app"}])
async def test_wrong_issuer_or_audience_is_401(
    client: AsyncClient, make_user: UserFactory, settings: Settings, app: FastAPI, claim: dict[str, str]
) -> None:
    user = await make_user()
    status, body = await _me_status(client, _sign(_claims(user, settings, **claim), settings, app))
    assert status == 401
    assert_error_shape(body, "invalid_token")
    assert body["error"]["message"] == "Invalid token"


@pytest.mark.parametrize("claim", ["iss", "aud", "exp", "iat", "sub", "type", "jti"])
async def test_token_missing_a_required_claim_is_401(
    client: AsyncClient, make_user: UserFactory, settings: Settings, app: FastAPI, claim: str
) -> None:
    user = await make_user()
    claims = _claims(user, settings)
    del claims[claim]
    status, body = await _me_status(client, _sign(claims, settings, app))
    assert status == 401
    assert_error_shape(body, "invalid_token")
    assert body["error"]["message"] == "Invalid token"


@pytest.mark.parametrize("claim", [{"exp": None}, {"iat": None}, {"scopes": "credits:write"}], ids=repr)
async def test_token_with_a_malformed_claim_is_401(
    client: AsyncClient, make_user: UserFactory, settings: Settings, app: FastAPI, claim: dict[str, Any]
) -> None:
    user = await make_user()
    status, body = await _me_status(client, _sign(_claims(user, settings, **claim), settings, app))
    assert status == 401
    assert_error_shape(body, "invalid_token")


@pytest.mark.parametrize(
    "claim",
    [
        {"sub": "not-a-uuid"},
        {"sub": "\x00"},
        {"sub": "service:message-service"},
        {"exp": float("inf")},
        {"iat": float("-inf")},
    ],
    ids=repr,
)
async def test_signed_token_with_an_impossible_subject_or_time_is_401_not_500(
    client: AsyncClient, make_user: UserFactory, settings: Settings, app: FastAPI, claim: dict[str, Any]
) -> None:
    """Only user-service could sign these, but its key signing them must not crash a reader."""
    user = await make_user()
    status, body = await _me_status(client, _sign(_claims(user, settings, **claim), settings, app))
    assert status == 401
    assert_error_shape(body, "invalid_token")
    assert body["error"]["message"] == "Invalid token"


async def test_tokens_of_the_test_mint_have_exactly_the_claims_user_service_issues(
    client: AsyncClient, make_user: UserFactory
) -> None:
    from chat_common.testing import TokenMint

    user = await make_user()
    mint = TokenMint()
    issued = jwt.get_unverified_claims(user.access_token)
    minted = jwt.get_unverified_claims(mint.token(sub=user.id))
    assert sorted(minted) == sorted(issued)
    assert {k: type(v) for k, v in minted.items()} == {k: type(v) for k, v in issued.items()}


async def test_token_signed_by_another_key_is_401(
    client: AsyncClient, make_user: UserFactory, settings: Settings, app: FastAPI
) -> None:
    from chat_common.testing import generate_rsa_private_key_pem

    user = await make_user()
    kid = app.state.auth.signer.kid
    token = jwt.encode(
        _claims(user, settings), generate_rsa_private_key_pem(), algorithm="RS256", headers={"kid": kid}
    )
    status, body = await _me_status(client, token)
    assert status == 401


async def test_refresh_token_used_as_access_token_is_401(client: AsyncClient, make_user: UserFactory) -> None:
    user = await make_user()
    status, body = await _me_status(client, user.refresh_token)
    assert status == 401
    assert_error_shape(body, "invalid_token")


async def test_token_of_unknown_type_is_401(
    client: AsyncClient, make_user: UserFactory, settings: Settings, app: FastAPI
) -> None:
    user = await make_user()
    status, body = await _me_status(client, _sign(_claims(user, settings, type="refresh"), settings, app))
    assert status == 401


async def test_missing_token_is_401(client: AsyncClient) -> None:
    response = await client.get("/api/v1/users/me")
    assert response.status_code == 401
    assert_error_shape(response.json(), "unauthorized")


async def test_previous_keys_stay_published_after_rotation(settings: Settings) -> None:
    """Rotate: the new key signs; the JWKS still has the old one, so its tokens verify until expiry."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from app.services.keys import TokenSigner
    from chat_common.auth import StaticKeySource
    from chat_common.testing import generate_rsa_private_key_pem

    assert settings.jwt_private_key is not None
    old_pem = settings.jwt_private_key.get_secret_value()
    old = TokenSigner(old_pem, settings)
    old_key = serialization.load_pem_private_key(old_pem.encode(), None)
    assert isinstance(old_key, rsa.RSAPrivateKey)
    old_public = (
        old_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    rotated = settings.model_copy(update={"jwt_previous_public_keys": [old_public]})
    new = TokenSigner(generate_rsa_private_key_pem(), rotated)
    assert [k["kid"] for k in new.jwks()["keys"]] == [new.kid, old.kid]
    verifier = TokenVerifier(
        StaticKeySource(new.jwks), issuer=settings.jwt_issuer, audience=settings.jwt_audience
    )
    old_user, new_user = str(uuid.uuid4()), str(uuid.uuid4())
    assert (await verifier.verify(old.access_token(user_id=old_user, role="user"))).subject == old_user
    assert (await verifier.verify(new.access_token(user_id=new_user, role="user"))).subject == new_user
