"""Mint RS256 tokens like user-service does, and serve their JWKS, for testing other services."""

from __future__ import annotations

import uuid
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from chat_common.testing.keys import generate_rsa_private_key_pem
from chat_common.tokens import ACCESS, SERVICE, build_claims, public_jwk, sign_claims


class TokenMint:
    """A stand-in issuer: user-service's claim builder and algorithm, its own key."""

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
        self.jwk = public_jwk(key.public_key(), kid)

    def claims(
        self,
        *,
        sub: str,
        role: str = "user",
        scopes: list[str] | None = None,
        token_type: str = ACCESS,
        ttl: int = 1800,
    ) -> dict[str, Any]:
        """The claims user-service would put in such a token (to alter before `sign`)."""
        return build_claims(
            sub=sub,
            role=role,
            scopes=scopes or [],
            token_type=token_type,
            issuer=self.issuer,
            audience=self.audience,
            ttl_seconds=ttl,
        )

    def sign(self, claims: dict[str, Any]) -> str:
        """Any claims, signed with this mint's key: for tokens user-service would never issue."""
        return sign_claims(claims, self.private_key_pem, self.kid)

    def token(
        self,
        *,
        sub: str,
        role: str = "user",
        scopes: list[str] | None = None,
        token_type: str = ACCESS,
        ttl: int = 1800,
        **extra: Any,
    ) -> str:
        claims = self.claims(sub=sub, role=role, scopes=scopes, token_type=token_type, ttl=ttl)
        return self.sign({**claims, **extra})

    def user(self, user_id: str | None = None, role: str = "user") -> str:
        return self.token(sub=user_id or str(uuid.uuid4()), role=role)

    def service(self, client_id: str, scopes: list[str]) -> str:
        return self.token(sub=f"service:{client_id}", role="service", scopes=scopes, token_type=SERVICE)

    def jwks_app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/.well-known/jwks.json")
        async def jwks() -> dict[str, Any]:
            return {"keys": [self.jwk]}

        return app
