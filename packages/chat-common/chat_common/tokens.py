"""What a fleet token is: its claims, the public JWK of its signing key, and the base64url they use.

user-service signs with these and `chat_common.testing.TokenMint` mints with them, so a test token is
exactly what user-service issues; `chat_common.auth` verifies against `REQUIRED_CLAIMS`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt

ALGORITHM = "RS256"
ACCESS = "access"
SERVICE = "service"
SERVICE_SUBJECT_PREFIX = "service:"  # a service token's `sub` is this and the client id
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "sub", "type", "jti")


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_uint(value: int) -> str:
    """An unsigned integer as unpadded base64url of its big-endian bytes (RFC 7518 section 2)."""
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def rsa_thumbprint(n: str, e: str) -> str:
    """The RFC 7638 thumbprint of an RSA key: stable for the key, different for every other."""
    canonical = json.dumps({"e": e, "kty": "RSA", "n": n}, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode()).digest())


def public_jwk(key: rsa.RSAPublicKey, kid: str | None = None) -> dict[str, str]:
    """The JWKS entry of an RSA public key; its kid is the key's thumbprint unless one is given."""
    numbers = key.public_numbers()
    n, e = b64url_uint(numbers.n), b64url_uint(numbers.e)
    return {"kty": "RSA", "use": "sig", "alg": ALGORITHM, "kid": kid or rsa_thumbprint(n, e), "n": n, "e": e}


def build_claims(
    *,
    sub: str,
    role: str,
    scopes: list[str],
    token_type: str,
    issuer: str,
    audience: str,
    ttl_seconds: int,
    now: int | None = None,
) -> dict[str, Any]:
    """The claims of an access or service token (DESIGN.md, Identity and trust)."""
    issued_at = int(time.time()) if now is None else now
    return {
        "sub": sub,
        "role": role,
        "scopes": scopes,
        "type": token_type,
        "iat": issued_at,
        "exp": issued_at + ttl_seconds,
        "jti": uuid.uuid4().hex,
        "iss": issuer,
        "aud": audience,
    }


def sign_claims(claims: dict[str, Any], private_key: Any, kid: str) -> str:
    """An RS256 JWT of `claims`; `private_key` is a PEM string or a parsed RSA private key."""
    return str(jwt.encode(claims, private_key, algorithm=ALGORITHM, headers={"kid": kid}))
