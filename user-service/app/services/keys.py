"""The RS256 signing key, its JWKS, and minting of access and service tokens."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.config import Settings
from chat_common.tokens import ACCESS, SERVICE, build_claims, public_jwk, sign_claims

DEV_KEY_FILE = "jwt_private_key.pem"


def load_private_key_pem(settings: Settings) -> str:
    """The configured key; in development, one generated once under DATA_DIR."""
    if settings.jwt_private_key:
        return settings.jwt_private_key.get_secret_value()
    if settings.jwt_private_key_file:
        return Path(settings.jwt_private_key_file).read_text()
    path = Path(settings.data_dir) / DEV_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
    return path.read_text()


def _load_public(pem: str) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("JWT_PREVIOUS_PUBLIC_KEYS must hold RSA public keys")
    return key


class TokenSigner:
    """Signs tokens with one RSA key; publishes its public half, and the previous keys' still valid
    for tokens they signed, as the JWKS."""

    def __init__(self, private_key_pem: str, settings: Settings) -> None:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("JWT private key must be an RSA key")
        current = public_jwk(key.public_key())
        self.kid = current["kid"]
        previous = [public_jwk(_load_public(pem)) for pem in settings.jwt_previous_public_keys]
        self._keys = [current, *(k for k in previous if k["kid"] != self.kid)]
        self._signing_key = key  # parsed once; python-jose accepts the key object
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.access_ttl_seconds = settings.access_token_minutes * 60
        self.service_ttl_seconds = settings.service_token_minutes * 60

    def jwks(self) -> dict[str, Any]:
        return {"keys": self._keys}

    def _sign(self, *, sub: str, role: str, scopes: list[str], token_type: str, ttl_seconds: int) -> str:
        claims = build_claims(
            sub=sub,
            role=role,
            scopes=scopes,
            token_type=token_type,
            issuer=self.issuer,
            audience=self.audience,
            ttl_seconds=ttl_seconds,
        )
        return sign_claims(claims, self._signing_key, self.kid)

    def access_token(self, *, user_id: str, role: str) -> str:
        return self._sign(
            sub=user_id, role=role, scopes=[], token_type=ACCESS, ttl_seconds=self.access_ttl_seconds
        )

    def service_token(self, *, client_id: str, scopes: list[str]) -> str:
        return self._sign(
            sub=f"service:{client_id}",
            role="service",
            scopes=scopes,
            token_type=SERVICE,
            ttl_seconds=self.service_ttl_seconds,
        )
