"""Tokens user-service never signed, made from a genuine token's claims and kid: the forgeries the
identity tests and the access matrix expect every service to refuse."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

from jose import jwk

from chat_common.testing import generate_rsa_private_key_pem
from chat_common.tokens import b64url, sign_claims

Forger = Callable[[dict[str, Any], str, dict[str, Any]], str]


def fresh_rsa_key(claims: dict[str, Any], kid: str, _: dict[str, Any]) -> str:
    """The genuine claims and kid, signed with an RSA key user-service never had."""
    return sign_claims(claims, generate_rsa_private_key_pem(), kid)


def hs256_with_the_public_key(claims: dict[str, Any], kid: str, public_jwk: dict[str, Any]) -> str:
    """HS256 keyed with user-service's public key (anyone has it): the algorithm-confusion attack."""
    secret = jwk.construct(public_jwk, "RS256").to_pem()
    return unsigned_token({"alg": "HS256", "typ": "JWT", "kid": kid}, claims, secret)


def alg_none(claims: dict[str, Any], kid: str, _: dict[str, Any]) -> str:
    return unsigned_token({"alg": "none", "typ": "JWT", "kid": kid}, claims, None)


def unsigned_token(header: dict[str, Any], claims: dict[str, Any], hmac_key: bytes | None) -> str:
    """`header` and `claims` signed with HMAC-SHA256 under `hmac_key`, or with no signature at all."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest() if hmac_key else b""
    return f"{signing_input}.{b64url(signature)}"
