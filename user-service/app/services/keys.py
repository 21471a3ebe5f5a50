"""The RS256 signing key, its JWKS, and minting of access and service tokens."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt

from app.config import Settings
from chat_common.auth import ACCESS, ALGORITHM, SERVICE

DEV_KEY_FILE = "jwt_private_key.pem"


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


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


def public_jwk(key: rsa.RSAPublicKey) -> dict[str, str]:
    """The JWKS entry of a public key; its kid is the RFC 7638 thumbprint (stable, changes on rotation)."""
    numbers = key.public_numbers()
    n, e = _b64url_uint(numbers.n), _b64url_uint(numbers.e)
    thumbprint_input = f'{{"e":"{e}","kty":"RSA","n":"{n}"}}'.encode()
    kid = base64.urlsafe_b64encode(hashlib.sha256(thumbprint_input).digest()).rstrip(b"=").decode()
    return {"kty": "RSA", "use": "sig", "alg": ALGORITHM, "kid": kid, "n": n, "e": e}


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
        self.access_ttl = timedelta(minutes=settings.access_token_minutes)
        self.service_ttl = timedelta(minutes=settings.service_token_minutes)

    def jwks(self) -> dict[str, Any]:
        return {"keys": self._keys}

    def _sign(self, *, sub: str, role: str, scopes: list[str], token_type: str, ttl: timedelta) -> str:
        now = datetime.now(UTC)
        claims = {
            "sub": sub,
            "role": role,
            "scopes": scopes,
            "type": token_type,
            "iat": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
            "jti": uuid.uuid4().hex,
            "iss": self.issuer,
            "aud": self.audience,
        }
        return str(jwt.encode(claims, self._signing_key, algorithm=ALGORITHM, headers={"kid": self.kid}))

    def access_token(self, *, user_id: str, role: str) -> str:
        return self._sign(sub=user_id, role=role, scopes=[], token_type=ACCESS, ttl=self.access_ttl)

    def service_token(self, *, client_id: str, scopes: list[str]) -> str:
        return self._sign(
            sub=f"service:{client_id}",
            role="service",
            scopes=scopes,
            token_type=SERVICE,
            ttl=self.service_ttl,
        )
