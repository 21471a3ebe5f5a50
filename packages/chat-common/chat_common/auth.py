"""JWT verification against user-service's JWKS, and the FastAPI dependencies built on it."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

import httpx
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from jose import JWTError, jwk, jwt

from chat_common.errors import ForbiddenError, ServiceUnavailableError, UnauthorizedError
from chat_common.settings import CommonSettings

ALGORITHM = "RS256"
ACCESS = "access"
SERVICE = "service"


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


class KeySource(Protocol):
    async def get_key(self, kid: str) -> dict[str, Any] | None: ...


class StaticKeySource:
    """Keys known in-process (user-service verifies its own tokens this way)."""

    def __init__(self, jwks: Callable[[], dict[str, Any]]) -> None:
        self._jwks = jwks

    async def get_key(self, kid: str) -> dict[str, Any] | None:
        return next((k for k in self._jwks()["keys"] if k.get("kid") == kid), None)


class JWKSKeySource:
    """Keys fetched from a JWKS URL, cached, and refetched when an unknown `kid` shows up."""

    def __init__(
        self,
        url: str,
        *,
        cache_seconds: int = 300,
        min_refetch_seconds: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.transport = transport
        self.cache_seconds = cache_seconds
        self.min_refetch_seconds = min_refetch_seconds
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def _refresh(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=5.0, transport=self.transport) as client:
                response = await client.get(self.url)
                response.raise_for_status()
                keys = response.json()["keys"]
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            if self._keys:
                return  # keep serving with the keys we have
            raise ServiceUnavailableError(
                "user-service JWKS is unavailable", code="auth_unavailable"
            ) from exc
        self._keys = {k["kid"]: k for k in keys if "kid" in k}
        self._fetched_at = time.monotonic()

    async def get_key(self, kid: str) -> dict[str, Any] | None:
        age = time.monotonic() - self._fetched_at
        if kid in self._keys and age < self.cache_seconds:
            return self._keys[kid]
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            stale = age >= self.cache_seconds
            unknown = kid not in self._keys and age >= self.min_refetch_seconds
            if stale or unknown:
                await self._refresh()
        return self._keys.get(kid)


class TokenVerifier:
    """Checks signature (RS256 only), expiry, issuer and audience; returns the caller.

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
            raise UnauthorizedError("Token has expired", code="token_expired")
        principal = await self._verify_uncached(token)
        self._verified[token] = principal
        if len(self._verified) > self.cache_size:
            self._verified.popitem(last=False)
        return principal

    async def _verify_uncached(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except JWTError as exc:
            raise UnauthorizedError("Malformed token", code="invalid_token") from exc
        if header.get("alg") != ALGORITHM:
            raise UnauthorizedError("Token algorithm not accepted", code="invalid_token")
        key = await self.keys.get_key(str(header.get("kid", "")))
        if key is None:
            raise UnauthorizedError("Token signed with an unknown key", code="invalid_token")
        try:
            claims = jwt.decode(
                token,
                self._prepared_key(key),
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
            )
        except jwt.ExpiredSignatureError as exc:
            raise UnauthorizedError("Token has expired", code="token_expired") from exc
        except JWTError as exc:
            raise UnauthorizedError(f"Invalid token: {exc}", code="invalid_token") from exc
        token_type = claims.get("type")
        if token_type not in (ACCESS, SERVICE) or not claims.get("sub") or "exp" not in claims:
            raise UnauthorizedError("Not an access token", code="invalid_token")
        return Principal(
            subject=str(claims["sub"]),
            role=str(claims.get("role", "user")),
            scopes=frozenset(claims.get("scopes") or ()),
            token_type=token_type,
            token=token,
            claims=claims,
        )


def jwks_verifier(settings: CommonSettings) -> TokenVerifier:
    """The verifier every service but user-service uses: user-service's JWKS over HTTP."""
    return TokenVerifier(
        JWKSKeySource(settings.jwks_url, cache_seconds=settings.jwks_cache_seconds),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )


oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


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
    """A service token carrying every named scope."""
    needed = frozenset(scopes)

    async def dependency(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not principal.is_service:
            raise ForbiddenError("This endpoint is for internal services only")
        missing = needed - principal.scopes
        if missing:
            raise ForbiddenError(f"Missing scope(s): {', '.join(sorted(missing))}")
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
