"""JWT verification against a JWKS URL: caching, refetch on an unknown kid, rejection rules."""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI
from jose import jwt

from chat_common.auth import JWKSKeySource, TokenVerifier
from chat_common.errors import ServiceUnavailableError, UnauthorizedError
from chat_common.testing import generate_rsa_private_key_pem


def _jwk(pem: str, kid: str) -> dict[str, Any]:
    numbers = serialization.load_pem_private_key(pem.encode(), None).public_key().public_numbers()  # type: ignore[union-attr]

    def b64(value: int) -> str:
        return (
            base64.urlsafe_b64encode(value.to_bytes((value.bit_length() + 7) // 8, "big"))
            .rstrip(b"=")
            .decode()
        )

    return {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid, "n": b64(numbers.n), "e": b64(numbers.e)}


def _token(pem: str, kid: str, **claims: Any) -> str:
    now = int(time.time())
    body = {
        "sub": "u1",
        "role": "user",
        "scopes": [],
        "type": "access",
        "iat": now,
        "exp": now + 60,
        "jti": "j",
        "iss": "iss",
        "aud": "aud",
        **claims,
    }
    return str(jwt.encode(body, pem, algorithm="RS256", headers={"kid": kid}))


class JWKSServer:
    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        self.app = FastAPI()

        @self.app.get("/jwks")
        async def jwks() -> dict[str, Any]:
            self.fetches += 1
            return {"keys": self.keys}

    def verifier(self, **kwargs: Any) -> TokenVerifier:
        source = JWKSKeySource("http://users/jwks", transport=httpx.ASGITransport(app=self.app), **kwargs)
        return TokenVerifier(source, issuer="iss", audience="aud")


@pytest.fixture(scope="module")
def pems() -> tuple[str, str]:
    return generate_rsa_private_key_pem(), generate_rsa_private_key_pem()


async def test_keys_are_cached(pems: tuple[str, str]) -> None:
    server = JWKSServer()
    server.keys = [_jwk(pems[0], "k1")]
    verifier = server.verifier()
    for _ in range(3):
        assert (await verifier.verify(_token(pems[0], "k1"))).subject == "u1"
    assert server.fetches == 1


async def test_unknown_kid_triggers_a_refetch_so_keys_can_rotate(pems: tuple[str, str]) -> None:
    server = JWKSServer()
    server.keys = [_jwk(pems[0], "k1")]
    verifier = server.verifier(min_refetch_seconds=0)
    await verifier.verify(_token(pems[0], "k1"))
    server.keys = [_jwk(pems[0], "k1"), _jwk(pems[1], "k2")]
    principal = await verifier.verify(_token(pems[1], "k2", sub="u2"))
    assert principal.subject == "u2" and server.fetches == 2


async def test_unknown_kid_refetches_are_throttled(pems: tuple[str, str]) -> None:
    server = JWKSServer()
    server.keys = [_jwk(pems[0], "k1")]
    verifier = server.verifier(min_refetch_seconds=60)
    await verifier.verify(_token(pems[0], "k1"))
    for _ in range(5):
        with pytest.raises(UnauthorizedError):
            await verifier.verify(_token(pems[1], "nope"))
    assert server.fetches == 1


async def test_service_token_scopes_are_read(pems: tuple[str, str]) -> None:
    server = JWKSServer()
    server.keys = [_jwk(pems[0], "k1")]
    principal = await server.verifier().verify(
        _token(pems[0], "k1", sub="service:x", type="service", scopes=["credits:write"])
    )
    assert principal.is_service and principal.scopes == {"credits:write"} and not principal.is_admin


async def test_unreachable_jwks_is_503_naming_it(pems: tuple[str, str]) -> None:
    verifier = TokenVerifier(JWKSKeySource("http://127.0.0.1:9/jwks"), issuer="iss", audience="aud")
    with pytest.raises(ServiceUnavailableError):
        await verifier.verify(_token(pems[0], "k1"))
