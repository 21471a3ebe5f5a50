"""JWT verification against user-service's JWKS, and the FastAPI dependencies built on it."""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import OAuth2PasswordBearer
from jose import JOSEError, jwk, jwt
from jose.utils import base64url_decode

from chat_common.errors import ForbiddenError, InsufficientScopeError, InvalidTokenError, UnauthorizedError
from chat_common.jwks import JWKSKeySource as JWKSKeySource
from chat_common.jwks import KeySource as KeySource
from chat_common.jwks import StaticKeySource as StaticKeySource
from chat_common.settings import CommonSettings
from chat_common.tokens import ACCESS as ACCESS
from chat_common.tokens import ALGORITHM as ALGORITHM
from chat_common.tokens import REQUIRED_CLAIMS, SERVICE_SUBJECT_PREFIX
from chat_common.tokens import SERVICE as SERVICE
from chat_common.validation import json_depth_exceeds

logger = logging.getLogger(__name__)

# How far in the future an `iat` may be: clocks of the fleet's hosts differ a little.
CLOCK_SKEW_SECONDS = 60
# A token's header and claims nest two levels (`scopes`); far deeper JSON is refused before any parser
# recurses into it.
MAX_TOKEN_JSON_DEPTH = 8
# python-jose checks presence of these (and validates the registered ones); `type` is ours.
_DECODE_OPTIONS = {f"require_{claim}": True for claim in REQUIRED_CLAIMS if claim != "type"}


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (access token) or an internal service (service token)."""

    subject: str
    role: str
    scopes: frozenset[str]
    token_type: str
    token: str = field(repr=False)
    claims: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def is_service(self) -> bool:
        return self.token_type == SERVICE

    @property
    def is_admin(self) -> bool:
        return self.role == "admin" and not self.is_service

    @property
    def user_id(self) -> str:
        return self.subject


class TokenVerifier:
    """Checks signature (RS256 only) and every required claim; returns the caller.

    Required and checked: `iss`, `aud` (ours), `exp` (not passed), `iat` (not in the future), `sub`,
    `type` (access or service) and `jti`; `role` and `scopes`, when present, must be a string and a list
    of strings. A rejection's message is fixed; why it was rejected goes to the log.

    A client sends the same token for up to its lifetime, so verified tokens are remembered (until
    their own expiry, at most `cache_size` of them) and parsed RSA keys are reused.
    """

    def __init__(self, keys: KeySource, *, issuer: str, audience: str, cache_size: int = 10_000) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.cache_size = cache_size
        self._verified: OrderedDict[str, Principal] = OrderedDict()
        self._prepared: dict[tuple[str, str], Any] = {}

    def _prepared_key(self, key: dict[str, Any]) -> Any:
        cache_key = (str(key.get("kid")), str(key.get("n")))
        if cache_key not in self._prepared:
            self._prepared[cache_key] = jwk.construct(key, ALGORITHM).prepared_key
        return self._prepared[cache_key]

    async def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None:
            if cached.claims["exp"] > time.time():
                return cached
            del self._verified[token]
            raise InvalidTokenError("Token has expired", code="token_expired")
        principal = await self._verify_uncached(token)
        self._verified[token] = principal
        if len(self._verified) > self.cache_size:
            self._verified.popitem(last=False)
        return principal

    async def _verify_uncached(self, token: str) -> Principal:
        if _nested_too_deep(token):
            raise _invalid(f"header or claims nested deeper than {MAX_TOKEN_JSON_DEPTH} levels")
        try:
            header = jwt.get_unverified_header(token)
        except JOSEError as exc:
            raise InvalidTokenError("Malformed token") from exc
        if header.get("alg") != ALGORITHM:
            raise InvalidTokenError("Token algorithm not accepted")
        key = await self.keys.get_key(str(header.get("kid", "")))
        if key is None:
            raise InvalidTokenError("Token signed with an unknown key")
        try:
            claims = jwt.decode(
                token,
                self._prepared_key(key),
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options=dict(_DECODE_OPTIONS),
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidTokenError("Token has expired", code="token_expired") from exc
        except (JOSEError, TypeError, ValueError, OverflowError, RecursionError) as exc:
            # python-jose calls int() on `exp`/`iat`/`nbf` as they come: TypeError for null,
            # OverflowError for infinity. RecursionError cannot happen after `_nested_too_deep`.
            raise _invalid(f"{type(exc).__name__}: {exc}") from exc
        problem = claims_problem(claims, now=time.time())
        if problem:
            raise _invalid(problem)
        return Principal(
            subject=claims["sub"],
            role=claims.get("role", "user"),
            scopes=frozenset(claims.get("scopes", ())),
            token_type=claims["type"],
            token=token,
            claims=claims,
        )


def _nested_too_deep(token: str) -> bool:
    """Whether the header or the claims nest deeper than any token should: checked on the bytes, split
    and decoded as python-jose does, before its JSON parser recurses (a RecursionError, a 500)."""
    signing_input = token.encode().rsplit(b".", 1)[0]
    if b"." not in signing_input:
        return False  # python-jose reports the missing segments
    try:
        return any(
            json_depth_exceeds(base64url_decode(segment), MAX_TOKEN_JSON_DEPTH)
            for segment in signing_input.split(b".", 1)
        )
    except (TypeError, ValueError):  # bad base64: python-jose reports it
        return False


def _invalid(detail: str) -> InvalidTokenError:
    logger.info("token rejected: %s", detail)
    return InvalidTokenError("Invalid token")


def claims_problem(claims: dict[str, Any], *, now: float) -> str | None:
    """What is wrong with the claims of a token whose signature, `iss`, `aud` and `exp` passed."""
    for name in ("sub", "type", "jti"):
        if not isinstance(claims.get(name), str) or not claims[name]:
            return f"claim {name!r} must be a non-empty string"
    if claims["type"] not in (ACCESS, SERVICE):
        return f"claim 'type' is {claims['type']!r}, not {ACCESS!r} or {SERVICE!r}"
    subject_problem = _subject_problem(claims["sub"], claims["type"])
    if subject_problem:
        return subject_problem
    for name in ("exp", "iat"):
        value = claims.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"claim {name!r} must be a number of seconds"
        if isinstance(value, float) and not math.isfinite(value):  # json reads Infinity and NaN
            return f"claim {name!r} must be a finite number of seconds"
    if claims["iat"] > now + CLOCK_SKEW_SECONDS:
        return "claim 'iat' is in the future"
    if not isinstance(claims.get("role", ""), str):
        return "claim 'role' must be a string"
    scopes = claims.get("scopes", [])
    if not isinstance(scopes, list) or not all(isinstance(scope, str) for scope in scopes):
        return "claim 'scopes' must be a list of strings"
    return None


def _subject_problem(subject: str, token_type: str) -> str | None:
    """A user's token names the user by id (a UUID, as user-service writes it); a service token names
    the service as `service:<client>`."""
    if token_type == SERVICE:
        if not subject.startswith(SERVICE_SUBJECT_PREFIX) or subject == SERVICE_SUBJECT_PREFIX:
            return f"claim 'sub' of a service token must be {SERVICE_SUBJECT_PREFIX}<client>"
        return None
    try:
        canonical = str(uuid.UUID(subject))
    except ValueError:
        canonical = None
    if canonical != subject:
        return "claim 'sub' of an access token must be a user id (a UUID)"
    return None


def jwks_verifier(settings: CommonSettings) -> TokenVerifier:
    """The verifier every service but user-service uses: user-service's JWKS over HTTP."""
    return TokenVerifier(
        JWKSKeySource(settings.jwks_url, cache_seconds=settings.jwks_cache_seconds),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )


# user-service's OAuth2 password endpoint. In the other services' OpenAPI documents the app factory
# makes it absolute (USER_SERVICE_PUBLIC_URL), so that Swagger's Authorize button reaches user-service.
TOKEN_PATH = "/api/v1/auth/token"
oauth2_scheme = OAuth2PasswordBearer(tokenUrl=TOKEN_PATH, auto_error=False)


def get_verifier(request: Request) -> TokenVerifier:
    verifier = getattr(request.app.state, "token_verifier", None)
    if verifier is None:
        raise RuntimeError("app.state.token_verifier is not configured")
    return verifier  # type: ignore[no-any-return]


async def get_principal(request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]) -> Principal:
    """Any valid token: a user's access token or a service token."""
    if not token:
        raise UnauthorizedError()
    principal = await get_verifier(request).verify(token)
    request.state.principal = principal
    return principal


async def get_current_user(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    """A user's access token; service tokens are refused."""
    if principal.is_service:
        raise ForbiddenError("This endpoint is for users, not services")
    return principal


async def get_current_admin(user: Annotated[Principal, Depends(get_current_user)]) -> Principal:
    if not user.is_admin:
        raise ForbiddenError("Administrator role required")
    return user


def require_scopes(*scopes: str) -> Callable[..., Awaitable[Principal]]:
    """A service token carrying every named scope. The scopes are declared on the bearer scheme, so
    the operation's OpenAPI security requirement names them (and the document marks it internal)."""
    needed = frozenset(scopes)

    # A default, not `Annotated`: the annotations are strings, resolved where `needed` is not in scope.
    async def dependency(principal: Principal = Security(get_principal, scopes=sorted(needed))) -> Principal:
        if not principal.is_service:
            raise ForbiddenError("This endpoint is for internal services only")
        missing = needed - principal.scopes
        if missing:
            raise InsufficientScopeError(
                f"Missing scope(s): {', '.join(sorted(missing))}", scope=" ".join(sorted(needed))
            )
        return principal

    return dependency


def require_roles(*roles: str) -> Callable[..., Awaitable[Principal]]:
    allowed = frozenset(roles)

    async def dependency(user: Annotated[Principal, Depends(get_current_user)]) -> Principal:
        if user.role not in allowed:
            raise ForbiddenError(f"Requires role: {', '.join(sorted(allowed))}")
        return user

    return dependency


def scopes_of(value: str | Iterable[str]) -> list[str]:
    """Scopes given as a space-separated string (OAuth2 form) or a list."""
    if isinstance(value, str):
        return [s for s in value.split() if s]
    return list(value)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
CurrentUser = Annotated[Principal, Depends(get_current_user)]
CurrentAdmin = Annotated[Principal, Depends(get_current_admin)]
