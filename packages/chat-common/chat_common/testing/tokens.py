"""Mint RS256 tokens like user-service does, and serve their JWKS, for testing other services."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from jose import jwt

from chat_common.testing.keys import generate_rsa_private_key_pem


def _b64(value: int) -> str:
    return (
        base64.urlsafe_b64encode(value.to_bytes((value.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()
    )


class TokenMint:
    """A stand-in issuer: same claims and algorithm as user-service, its own key."""

    def __init__(
        self,
        issuer: str = "character-chat-user-service",
        audience: str = "character-chat",
        private_key_pem: str | None = None,
        kid: str = "test-key",
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.kid = kid
        self.private_key_pem = private_key_pem or generate_rsa_private_key_pem()
        key = serialization.load_pem_private_key(self.private_key_pem.encode(), None)
        assert isinstance(key, rsa.RSAPrivateKey)
        numbers = key.public_key().public_numbers()
        self.jwk = {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": kid,
            "n": _b64(numbers.n),
            "e": _b64(numbers.e),
        }

    def token(
        self,
        *,
        sub: str,
        role: str = "user",
        scopes: list[str] | None = None,
        token_type: str = "access",
        ttl: int = 1800,
        **extra: Any,
    ) -> str:
        now = int(time.time())
        claims = {
            "sub": sub,
            "role": role,
            "scopes": scopes or [],
            "type": token_type,
            "iat": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
            "iss": self.issuer,
            "aud": self.audience,
            **extra,
        }
        return str(jwt.encode(claims, self.private_key_pem, algorithm="RS256", headers={"kid": self.kid}))

    def user(self, user_id: str | None = None, role: str = "user") -> str:
        return self.token(sub=user_id or str(uuid.uuid4()), role=role)

    def service(self, client_id: str, scopes: list[str]) -> str:
        return self.token(sub=f"service:{client_id}", role="service", scopes=scopes, token_type="service")

    def jwks_app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/.well-known/jwks.json")
        async def jwks() -> dict[str, Any]:
            return {"keys": [self.jwk]}

        return app
