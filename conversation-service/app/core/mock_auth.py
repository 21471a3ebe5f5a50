"""Mock auth: development tokens signed with a key made at start-up, verified by this service only."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from chat_common.auth import StaticKeySource, TokenVerifier
from chat_common.settings import CommonSettings
from chat_common.tokens import ACCESS, build_claims, public_jwk, sign_claims

MOCK_KID = "conversation-service-mock"
MOCK_TOKEN_SECONDS = 24 * 3600


class MockAuth:
    def __init__(self, settings: CommonSettings) -> None:
        self.settings = settings
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._jwks: dict[str, Any] = {"keys": [public_jwk(self._key.public_key(), MOCK_KID)]}

    def token(self, user_id: str) -> str:
        claims = build_claims(
            sub=user_id,
            role="user",
            scopes=[],
            token_type=ACCESS,
            issuer=self.settings.jwt_issuer,
            audience=self.settings.jwt_audience,
            ttl_seconds=MOCK_TOKEN_SECONDS,
        )
        return sign_claims(claims, self._key, MOCK_KID)

    def verifier(self) -> TokenVerifier:
        return TokenVerifier(
            StaticKeySource(lambda: self._jwks),
            issuer=self.settings.jwt_issuer,
            audience=self.settings.jwt_audience,
        )
